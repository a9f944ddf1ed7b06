//! Lambda entry point: wiring only. Configuration, the secret and the HTTP client are set up
//! once, at cold start; the engine runs the notifier over each batch.

use notifier::{Config, Notifier, SigningKey, secret};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let env = mailroom_lambda::Env::process();
    mailroom_lambda::telemetry::init(&env);
    let config = Config::from_env(&env)?;
    let aws = mailroom_lambda::aws::from_env();
    let secret = secret::resolve(&config.secret, &aws).await?;
    let key = SigningKey::from_secret(&secret)?;
    let notifier = Notifier::new(config, key)?;
    // The circuit breaker holds only the events bound for a host that is down.
    let engine = mailroom_lambda::Engine::from_env(&env, &aws)?.with_router(notifier.router());
    mailroom_lambda::serve(&engine, |msg| notifier.handle(msg)).await
}
