//! Settling a metered request once its body ends: the bill, the usage record, the store write.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use apihub_core::billing::{BillingError, Settled, Settlement};
use apihub_core::pricing::{ModelPrice, cost};
use apihub_core::store::UsageRecord;
use apihub_core::{DiscountRate, Money};

use super::meter::{Meter, Outcome};
use super::{Reservation, SettlementBacklog, UsageSink};
use crate::log_sample::LogSample;

/// Everything needed to settle a request once its body ends.
pub(crate) struct Settle {
    /// When the request was forwarded (time to first byte counts from it).
    pub(super) started: Instant,
    pub(super) reservation: Reservation,
    pub(super) price: ModelPrice,
    /// What the operator pays the upstream that answered, when known (see
    /// [`ServedBy`](crate::context::ServedBy)).
    pub(super) cost_price: Option<ModelPrice>,
    pub(super) user_discount: DiscountRate,
    pub(super) key_discount: DiscountRate,
    pub(super) sink: Arc<dyn UsageSink>,
    pub(super) record: UsageRecord,
    pub(super) backlog: Arc<SettlementBacklog>,
    /// Where the charge goes once settled, for a response that waits for it.
    pub(super) receipt: Option<Arc<OnceLock<Money>>>,
}

impl Settle {
    /// Bills what `meter` saw and returns the work that writes it.
    pub(crate) fn run(self, meter: &Meter, outcome: Outcome) -> impl Future<Output = ()> + Send + 'static {
        let bill = meter.bill(outcome, &self.price, self.user_discount, self.key_discount);
        // The operator's cost of the usage billed: full price, rounded once like the charge.
        let operator_cost = self.cost_price.map(|price| cost(&price, &bill.usage));
        let first_byte = meter.first_byte().map(|at| at.saturating_duration_since(self.started));
        async move {
            let Settle { reservation, sink, mut record, backlog, receipt, .. } = self;
            record.first_byte_ms = first_byte.map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX));
            if let Some(reported) = bill.implausible {
                tracing::warn!(
                    request = %record.request_id,
                    model = %record.model,
                    ?reported,
                    max = apihub_core::usage::MAX_REPORTED_TOKENS,
                    "the upstream reported an implausible usage; billed with each count clamped to the maximum"
                );
            }
            if !bill.billable {
                if let Err(error) = reservation.release().await {
                    static LOG: LogSample = LogSample::new();
                    if let Some(skipped) = LOG.sample() {
                        tracing::error!(%error, request = %record.request_id, skipped, "releasing a reservation failed");
                    }
                }
                record.status = if outcome == Outcome::Completed { record.status } else { 499 };
                sink.record(record);
                if let Some(receipt) = receipt {
                    let _ = receipt.set(Money::ZERO);
                }
                return;
            }
            let settlement = Settlement {
                charge: bill.charge,
                tokens: i64::try_from(bill.usage.total_tokens()).unwrap_or(i64::MAX),
                success: outcome == Outcome::Completed,
                description: format!("{} via key {}", record.model, record.key_id),
            };
            let count = |v: Option<u64>| i64::try_from(v.unwrap_or(0)).unwrap_or(i64::MAX);
            record.prompt_tokens = count(bill.usage.input_tokens);
            record.completion_tokens = count(bill.usage.output_tokens);
            record.cached_tokens = count(bill.usage.cache_read_tokens);
            record.raw_cost = bill.raw_cost;
            record.cost = operator_cost;
            record.usage_source = bill.source;
            if outcome == Outcome::Aborted {
                record.status = 499;
            }
            let recorded = move |settled: Settled| {
                record.charged = settled.charged;
                record.overage = settled.overage;
                sink.record(record);
                if let Some(receipt) = receipt {
                    let _ = receipt.set(settled.charged);
                }
            };
            let mut reservation = reservation;
            match reservation.try_settle(&settlement).await {
                Ok(settled) => recorded(settled),
                // The store could not write it: the reservation stays open and the settlement is
                // retried on a task of its own until it is written, so the answered request is
                // billed exactly once; the client's response ends now.
                Err(BillingError::Store(error)) => {
                    static LOG: LogSample = LogSample::new();
                    if let Some(skipped) = LOG.sample() {
                        tracing::error!(%error, reservation = ?reservation, skipped, "settling failed; retrying until written");
                    }
                    backlog.retry(reservation, settlement, recorded);
                }
                Err(error) => tracing::error!(%error, "settling a reservation failed"),
            }
        }
    }
}
