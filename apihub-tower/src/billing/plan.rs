//! Planning a request: its model, its price and the hold it needs.

use apihub_core::billing::HoldRequest;
use apihub_core::pricing::{ModelPrice, max_charge};
use apihub_core::usage::RequestInfo;
use http::StatusCode;

use super::BillingLayer;
use crate::body::GatewayError;
use crate::context::AuthenticatedKey;

/// What the request asks for, checked: the model, its price and the hold.
pub(super) struct Plan {
    pub(super) info: RequestInfo,
    pub(super) model: String,
    pub(super) price: ModelPrice,
    pub(super) hold: HoldRequest,
}

impl BillingLayer {
    pub(super) fn plan(&self, identity: &AuthenticatedKey, info: RequestInfo) -> Result<Plan, GatewayError> {
        let model = info.model.clone().ok_or_else(|| {
            GatewayError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "model_required",
                "the request names no model",
            )
        })?;
        let price = self.shared.prices.price(&model).ok_or_else(|| {
            GatewayError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
                format!("the model `{model}` does not exist or is not available on this gateway"),
            )
        })?;
        // The hold is the expected cost of the prompt (its bytes ÷ 4 tokens, at the highest of the
        // input and cache prices) plus the whole output cap, discounted and rounded once. It is not
        // a worst case: usage above it is still billed at settlement.
        let output_cap = info.output_cap.unwrap_or(self.shared.config.default_output_cap);
        let amount = max_charge(
            &price,
            info.prompt_estimate,
            output_cap,
            identity.key.owner_discount,
            identity.key.policy.discount_rate,
        );
        let tokens = i64::try_from(info.prompt_estimate.saturating_add(output_cap)).unwrap_or(i64::MAX);
        Ok(Plan { info, model, price, hold: HoldRequest { amount, tokens } })
    }
}
