//! The responses every operation can give whatever its handler does, added to the OpenAPI
//! document in one place rather than on each route: the extractors' refusals (bad JSON, wrong
//! content type, oversized body, bad query string, unknown path), the session check (401, and 403
//! for a disabled account or a non-administrator) and a database that is away (503).

use utoipa::Modify;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{AdditionalProperties, Object, Schema};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};

/// Adds the framework-level responses to every operation that can produce them (an answer the
/// route already documents keeps its own description).
pub struct FrameworkResponses;

impl Modify for FrameworkResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        close_flattened(openapi, &["CreateKeyRequest", "BatchCreateRequest"]);
        for (path, item) in &mut openapi.paths.paths {
            let operations =
                [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch, &mut item.head];
            for operation in operations.into_iter().flatten() {
                add_responses(path, operation);
            }
        }
    }
}

fn add_responses(path: &str, operation: &mut Operation) {
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let json_body = operation.request_body.as_ref().is_some_and(|b| b.content.contains_key("application/json"));
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    let has_query = parameters.iter().any(|p| p.parameter_in == ParameterIn::Query);
    let has_path = parameters.iter().any(|p| p.parameter_in == ParameterIn::Path);
    // The EPay callback answers `fail` in text to anything it cannot use, and the probes answer
    // for themselves.
    let plain = path.ends_with("/recharge/callback") || path == "/healthz" || path == "/readyz";

    let mut add = |status: &str, description: &str| {
        operation.responses.responses.entry(status.to_owned()).or_insert_with(|| error_response(description));
    };
    if json_body {
        add("400", "The body is not well-formed JSON");
        add("413", "The body is larger than MAX_BODY_BYTES");
        add("415", "The body is not sent as `Content-Type: application/json`");
        add("422", "A value is invalid");
    }
    if has_query && !plain {
        add("422", "A value is invalid");
    }
    if has_path {
        add("404", "Not found");
    }
    if secured {
        add("401", "Missing, invalid or expired session token");
        add("403", "The account is disabled, or the route is for administrators only");
    }
    if !plain {
        add("503", "The database is unavailable");
    }
}

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
        .build()
        .into()
}

/// Request types that flatten a shared part (`#[serde(flatten)]`) and refuse unknown fields in
/// their handler are documented by utoipa as an open `allOf`; this merges each into one object
/// with `additionalProperties: false`, which is what the server accepts.
fn close_flattened(openapi: &mut OpenApi, names: &[&str]) {
    let Some(components) = openapi.components.as_mut() else { return };
    for name in names {
        let Some(RefOr::T(Schema::AllOf(all))) = components.schemas.get(*name) else { continue };
        let mut merged = Object::new();
        merged.description.clone_from(&all.description);
        for part in &all.items {
            let part = match part {
                RefOr::Ref(r) => {
                    let target = r.ref_location.rsplit('/').next().unwrap_or_default();
                    components.schemas.get(target)
                }
                inline => Some(inline),
            };
            if let Some(RefOr::T(Schema::Object(object))) = part {
                merged.properties.extend(object.properties.clone());
                merged.required.extend(object.required.iter().cloned());
            }
        }
        merged.schema_type = utoipa::openapi::schema::SchemaType::Type(utoipa::openapi::Type::Object);
        merged.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
        components.schemas.insert((*name).to_owned(), RefOr::T(Schema::Object(merged)));
    }
}
