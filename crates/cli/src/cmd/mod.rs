//! One module per top-level command.

pub mod approvals;
pub mod audit;
pub mod demo;
pub mod demo_agent;
pub mod demo_broker;
pub mod env;
pub mod init;
pub mod policy;
pub mod run;
pub mod scan;
pub mod secret;
pub mod serve;
pub mod task;
pub mod token;
pub mod upstream;
