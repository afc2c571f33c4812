//! Serving HTTP safely: every connection bounded in time and number, idle ones shed before new
//! clients are refused, requests counted per connection, and every error as problem details.

pub mod admin_access;
pub mod connection;
pub mod cookie;
pub mod http1;
pub mod io;
pub mod problem;
pub mod server;
