//! The APIHub gateway server: routes, storage, accounts and the admin API.

pub mod db;
