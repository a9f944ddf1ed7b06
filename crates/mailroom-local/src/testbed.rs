//! The one test bed every test binary shares: the AWS emulator started once per binary, SDK
//! clients on it, unique names, and the function binaries under the Runtime Interface
//! Emulator.

/// A function binary under AWS's Runtime Interface Emulator (the one `sam local invoke` runs,
/// from the aws-sam-cli wheel in the project venv), on two free loopback ports. It stops when
/// dropped.
#[derive(Debug)]
pub struct Rie(crate::runner::FunctionProcess);

impl Rie {
    /// Starts `binary` under the emulator with only `env` (plus `PATH`) in its environment.
    ///
    /// # Panics
    /// When the venv or the emulator is missing (run `scripts/setup.sh`), or it cannot start.
    pub async fn start(binary: &std::path::Path, env: &[(&str, &str)]) -> Self {
        let root = crate::workspace_root();
        let rie = crate::runner::emulator(&crate::Moto::venv(root))
            .expect("the venv has aws-sam-cli: run scripts/setup.sh");
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Self(
            crate::runner::FunctionProcess::start(&rie, binary, &env, None)
                .await
                .expect("the RIE starts"),
        )
    }

    /// Invokes the function with `event` the way `sam local invoke` does and returns its JSON
    /// answer (a function error's `errorType`/`errorMessage` object included).
    ///
    /// # Panics
    /// When the event is not JSON or the emulator never answers.
    pub async fn invoke(&self, event: &[u8]) -> serde_json::Value {
        let event: serde_json::Value = serde_json::from_slice(event).expect("a JSON event");
        match self.0.invoke(&event).await {
            Ok(v) => v,
            Err(crate::runner::InvokeError::Function {
                error_type,
                message,
            }) => {
                serde_json::json!({ "errorType": error_type, "errorMessage": message })
            }
            Err(e) => panic!("{e}"),
        }
    }
}
