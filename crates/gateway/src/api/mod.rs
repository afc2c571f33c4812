//! The public REST API.

pub mod batch;
pub mod body;
pub mod cron;
pub mod job_admin;
pub mod job_spec;
pub mod jobs;
pub mod pauses;
pub mod probes;
pub mod process;
