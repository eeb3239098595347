//! The APIHub gateway server: axum routes, diesel storage (SQLite or PostgreSQL), session tokens
//! and the account, key and credit API. `main.rs` is a thin command line over [`app`].

pub mod allocator;
pub mod app;
pub mod auth;
pub mod config;
pub mod db;
pub mod epay;
pub mod error;
pub mod extract;
pub mod metered;
pub mod metrics;
mod priority;
pub mod proxy;
pub mod retention;
pub mod routes;
pub mod scale;
pub mod serve;
pub mod state;

pub use routes::{App, build_app, openapi};
