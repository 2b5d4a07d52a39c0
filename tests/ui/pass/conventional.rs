//! No `grpc`: the tonic trait follows from the version's name, `logger_service_server::LoggerService`
//! (the module in scope), or `path::config_service_server::ConfigService` for a version with a path.
use grpc_helper::api::{Filter, LoggerApiVersion, LoggerStatus, logger_service_server};
use grpc_helper::{RpcError, rpc_manager};

struct Conventional;

#[rpc_manager(service = "conventional", version = LoggerApiVersion)]
impl Conventional {
    async fn get(&self, _request: Filter) -> Result<LoggerStatus, RpcError> {
        Ok(LoggerStatus::default())
    }
}

// An empty block: every method answers UNIMPLEMENTED.
struct ConventionalWithPath;

#[rpc_manager(service = "conventional-path", version = grpc_helper::api::ConfigApiVersion)]
impl ConventionalWithPath {}

fn main() {}
