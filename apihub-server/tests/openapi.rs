//! The OpenAPI document is an interface (the dashboard's client is generated from it): any change
//! to it must show up in review as a snapshot diff.

#[test]
fn openapi_document_is_stable() {
    let document = serde_json::to_value(apihub_server::openapi()).expect("serializable");
    insta::assert_json_snapshot!("openapi", document);
}
