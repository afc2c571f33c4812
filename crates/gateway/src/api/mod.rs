//! The public REST API.

pub mod body;
pub mod health;
pub mod process;
