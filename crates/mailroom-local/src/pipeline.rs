//! The whole application on one machine: the emulator, template.yaml's topology, and every
//! function as its real binary under the Runtime Interface Emulator, driven by Lambda's
//! event-source rules and schedules.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::task::JoinSet;

use crate::faults::{FaultPlan, FaultyEndpoint};
use crate::function_url::FunctionUrl;
use crate::lambda_api::{LambdaApi, Mappings};
use crate::proxy::Upstreams;
use crate::runner::{self, Counters, FunctionProcess};
use crate::template::{Clients, FunctionSpec, Provisioned, Template};
use crate::{Moto, REGION};

/// How to bring the pipeline up.
#[derive(Debug, Clone)]
pub struct Options {
    /// The project root (the venv; template.yaml unless `template` names another).
    pub root: PathBuf,
    /// The application's template, when not the root's template.yaml: a consumer in its own
    /// repository. Functions whose binary is not in `bin_dir` are looked for in the cargo
    /// target directory of their crate (`CodeUri`).
    pub template: Option<PathBuf>,
    /// Where the function binaries are (a cargo target profile directory).
    pub bin_dir: PathBuf,
    /// The stack name resources are named after.
    pub stack: String,
    /// Template parameters.
    pub parameters: HashMap<String, String>,
    /// Environment changes per binary: `Some` sets, `None` removes.
    pub env: BTreeMap<String, BTreeMap<String, Option<String>>>,
    /// Binaries run in place of the template's, by the template's binary name: a local
    /// build with injected faults, for instance.
    pub substitutes: BTreeMap<String, String>,
    /// Speed-up for queue visibility timeouts and schedules.
    pub speed: u32,
    /// Functions' logs go to files in this directory, when given.
    pub log_dir: Option<PathBuf>,
    /// An emulator already running (tests share one); else one is started.
    pub endpoint: Option<String>,
    /// Faults to inject into the application's AWS calls (the functions', the event
    /// sources' and [`Pipeline::traffic`]'s), through a [`FaultyEndpoint`]. Provisioning and
    /// [`Pipeline::clients`] talk to the emulator directly, so what they read is independent.
    pub faults: Option<FaultPlan>,
    /// Run only these functions (by logical id), when given; the template is still
    /// provisioned whole. A test of one consumer leaves the others' webhooks alone.
    pub only: Option<std::collections::BTreeSet<String>>,
}

/// One running function.
#[derive(Debug)]
pub struct Running {
    /// What the template says of it.
    pub spec: FunctionSpec,
    /// Its counters.
    pub counters: Arc<Counters>,
    /// Its emulator instances (one per unit of concurrency).
    pub processes: Vec<Arc<FunctionProcess>>,
    /// Its Function URL on loopback, when the template gives it one.
    pub url: Option<FunctionUrl>,
}

/// The pipeline, up.
#[derive(Debug)]
pub struct Pipeline {
    /// The emulator endpoint.
    pub endpoint: String,
    /// What was provisioned.
    pub provisioned: Provisioned,
    /// The functions, by logical id.
    pub functions: BTreeMap<String, Running>,
    /// SDK clients on the emulator, directly: provisioning and independent reads.
    pub clients: Clients,
    /// SDK clients for the application's own traffic (a producer's publishes): through the
    /// fault proxy when there is one, else the same as `clients`.
    pub traffic: Clients,
    /// The fault proxy, when faults were asked for.
    pub faulty: Option<FaultyEndpoint>,
    /// The event source mappings, as the Lambda API shows them.
    pub mappings: Arc<Mappings>,
    /// The Lambda API's event source mapping operations, on loopback.
    pub lambda_api: LambdaApi,
    tasks: JoinSet<()>,
    _moto: Option<Moto>,
}

/// The binary to run for `spec`: its substitute or itself in `bin_dir`, else (a consumer
/// built in its own repository) in the debug profile of the target directory above its crate.
fn locate(options: &Options, spec: &FunctionSpec) -> Result<PathBuf, UpError> {
    let name = options
        .substitutes
        .get(&spec.binary)
        .unwrap_or(&spec.binary);
    let beside = options.bin_dir.join(name);
    if beside.exists() {
        return Ok(beside);
    }
    let own = spec.crate_dir.as_ref().and_then(|dir| {
        let dir = dir.canonicalize().ok()?;
        dir.ancestors()
            .map(|a| a.join("target").join("debug").join(&spec.binary))
            .find(|b| b.exists())
    });
    own.ok_or(UpError::NotBuilt(beside))
}

/// Sets (`Some`) and removes (`None`) variables; a removed one is taken out of the
/// consumer's settings too, which would otherwise still supply it.
fn apply(env: &mut BTreeMap<String, String>, changes: &BTreeMap<String, Option<String>>) {
    for (k, v) in changes {
        match v {
            Some(v) => env.insert(k.clone(), v.clone()),
            None => env.remove(k),
        };
    }
    let settings = mailroom_lambda::config::SETTINGS;
    if let Some(Ok(serde_json::Value::Object(mut map))) = env
        .get(settings)
        .map(|s| serde_json::from_str::<serde_json::Value>(s))
    {
        map.retain(|k, _| !matches!(changes.get(k), Some(None)));
        env.insert(
            settings.to_owned(),
            serde_json::Value::Object(map).to_string(),
        );
    }
}

/// Why the pipeline could not come up.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// The emulator or a function could not start.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The template could not be provisioned.
    #[error(transparent)]
    Template(#[from] crate::template::TemplateError),
    /// A function binary is missing.
    #[error("{0} is not built: run `cargo build --bins` first")]
    NotBuilt(PathBuf),
}

impl Pipeline {
    /// Starts the emulator (unless one is given), provisions template.yaml, and starts every
    /// function with pollers for its queues and timers for its schedules.
    ///
    /// # Errors
    /// When anything cannot start; nothing half-started is left running (it is dropped).
    pub async fn up(options: &Options) -> Result<Self, UpError> {
        let venv = Moto::venv(&options.root);
        let (endpoint, moto) = match &options.endpoint {
            Some(e) => (e.clone(), None),
            None => {
                let moto = Moto::start(&venv)?;
                (moto.endpoint().to_owned(), Some(moto))
            }
        };
        let aws = mailroom_lambda::aws::emulator(&endpoint, REGION);
        let clients = Clients {
            sqs: aws_sdk_sqs::Client::new(&aws),
            sns: aws_sdk_sns::Client::new(&aws),
            dynamodb: aws_sdk_dynamodb::Client::new(&aws),
        };
        let template_path = options
            .template
            .clone()
            .unwrap_or_else(|| options.root.join("template.yaml"));
        let template = Template::load(&venv, &template_path)?;
        let provisioned = template
            .provision_with_speed(&clients, &options.stack, &options.parameters, options.speed)
            .await?;
        let faulty = match options.faults {
            // Straight to the emulator's processes when it is ours: one hop, not two.
            Some(plan) => {
                let upstreams = moto
                    .as_ref()
                    .map_or_else(|| Upstreams::single(&endpoint), Moto::upstreams);
                Some(FaultyEndpoint::start(upstreams, plan, 0x6d61_696c).await?)
            }
            None => None,
        };
        let app_endpoint = faulty
            .as_ref()
            .map_or(endpoint.as_str(), FaultyEndpoint::endpoint)
            .to_owned();
        let app = mailroom_lambda::aws::emulator(&app_endpoint, REGION);
        // The functions call DynamoDB's process directly when the emulator is ours and no
        // faults sit in front of it (one hop instead of the router's two, as DynamoDB has its
        // own endpoint in AWS), through the SDKs' per-service endpoint variable. SQS and SNS
        // stay on the router's endpoint: moto writes a queue's URL with the host it was asked
        // on, and every queue URL in the pipeline must be the one the template provisioned.
        let mut endpoints = vec![("AWS_ENDPOINT_URL", app_endpoint.clone())];
        if let (None, Some(moto)) = (&faulty, &moto) {
            endpoints.push((
                "AWS_ENDPOINT_URL_DYNAMODB",
                moto.upstreams().dynamodb().to_owned(),
            ));
        }
        let traffic = Clients {
            sqs: aws_sdk_sqs::Client::new(&app),
            sns: aws_sdk_sns::Client::new(&app),
            dynamodb: aws_sdk_dynamodb::Client::new(&app),
        };
        let rie = runner::emulator(&venv)?;
        // The Lambda API's event source mappings, which the functions (the task monitor, for
        // circuit breakers) pause and resume.
        let mappings = Arc::new(Mappings::default());
        let lambda_api = LambdaApi::serve(mappings.clone()).await?;
        let mut tasks = JoinSet::new();
        let mut functions = BTreeMap::new();
        for spec in &provisioned.functions {
            if options
                .only
                .as_ref()
                .is_some_and(|only| !only.contains(&spec.logical_id))
            {
                continue;
            }
            let binary = locate(options, spec)?;
            let mut env = spec.environment.clone();
            env.insert("AWS_REGION".into(), REGION.into());
            env.insert("AWS_ACCESS_KEY_ID".into(), "local".into());
            env.insert("AWS_SECRET_ACCESS_KEY".into(), "local".into());
            for (variable, url) in &endpoints {
                env.insert((*variable).into(), url.clone());
            }
            env.insert(
                "AWS_ENDPOINT_URL_LAMBDA".into(),
                lambda_api.url().to_owned(),
            );
            env.insert("AWS_LAMBDA_FUNCTION_NAME".into(), spec.logical_id.clone());
            // The emulator gives each invocation this deadline, as Lambda does.
            env.insert(
                "AWS_LAMBDA_FUNCTION_TIMEOUT".into(),
                spec.timeout_secs.to_string(),
            );
            if let Some(changes) = options.env.get(&spec.binary) {
                apply(&mut env, changes);
            }
            let concurrency = spec
                .queues
                .iter()
                .filter_map(|q| q.maximum_concurrency)
                .max()
                .map_or(1, |c| usize::try_from(c).unwrap_or(1))
                .clamp(1, 2);
            let mut processes = Vec::new();
            for i in 0..concurrency {
                let log = match &options.log_dir {
                    Some(dir) => {
                        std::fs::create_dir_all(dir)?;
                        Some(std::fs::File::create(
                            dir.join(format!("{}-{i}.log", spec.binary)),
                        )?)
                    }
                    None => None,
                };
                processes.push(Arc::new(
                    FunctionProcess::start(&rie, &binary, &env, log).await?,
                ));
            }
            let counters = Arc::new(Counters::default());
            for source in &spec.queues {
                let mapping =
                    mappings.add(&spec.logical_id, source.arn.as_str(), source.batch_size);
                for p in &processes {
                    tasks.spawn(runner::poll(
                        traffic.sqs.clone(),
                        source.clone(),
                        p.clone(),
                        counters.clone(),
                        options.speed,
                        mapping.clone(),
                    ));
                }
            }
            for expression in &spec.schedules {
                if let Some(period) = runner::rate(expression) {
                    tasks.spawn(runner::schedule(
                        processes[0].clone(),
                        format!("{}-{}", options.stack, spec.logical_id),
                        period,
                        options.speed,
                        counters.clone(),
                    ));
                }
            }
            let url = match spec.function_url {
                Some(_) => Some(FunctionUrl::serve(processes[0].clone()).await?),
                None => None,
            };
            functions.insert(
                spec.logical_id.clone(),
                Running {
                    spec: spec.clone(),
                    counters,
                    processes,
                    url,
                },
            );
        }
        Ok(Self {
            endpoint,
            provisioned,
            functions,
            clients,
            traffic,
            faulty,
            tasks,
            mappings,
            lambda_api,
            _moto: moto,
        })
    }

    /// A function's first emulator instance, for on-demand invocations (replay, a sweep).
    pub fn function(&self, logical_id: &str) -> Option<&Arc<FunctionProcess>> {
        self.functions.get(logical_id)?.processes.first()
    }

    /// (visible, in flight) messages of a queue, by logical id.
    pub async fn depth(&self, queue: &str) -> (u64, u64) {
        match self.provisioned.queues.get(queue) {
            Some((url, _)) => mailroom_ops::sqs::queue_depth(&self.clients.sqs, url)
                .await
                .unwrap_or((0, 0)),
            None => (0, 0),
        }
    }

    /// Waits until every queue a function polls is empty (nothing visible or in flight), up
    /// to `timeout`. Returns whether it drained.
    pub async fn drain(&self, timeout: std::time::Duration) -> bool {
        let started = std::time::Instant::now();
        let sources: Vec<String> = self
            .functions
            .values()
            .flat_map(|f| f.spec.queues.iter())
            .filter_map(|s| {
                self.provisioned
                    .queues
                    .iter()
                    .find(|(_, (_, arn))| *arn == s.arn)
                    .map(|(id, _)| id.clone())
            })
            .collect();
        while started.elapsed() < timeout {
            let mut busy = false;
            for q in &sources {
                let (v, f) = self.depth(q).await;
                busy |= v + f > 0;
            }
            if !busy {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        false
    }

    /// One line per function: invocations and records.
    pub fn counters_summary(&self) -> Vec<String> {
        self.functions
            .iter()
            .map(|(id, f)| {
                let c = &f.counters;
                format!(
                    "{id}: {} invocations, {} records, {} succeeded, {} retried, {} batch failures, {} scheduled",
                    c.invocations.load(Ordering::Relaxed),
                    c.records.load(Ordering::Relaxed),
                    c.succeeded.load(Ordering::Relaxed),
                    c.retried.load(Ordering::Relaxed),
                    c.batch_failures.load(Ordering::Relaxed),
                    c.scheduled.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Stops the pollers, schedules and functions.
    pub async fn down(mut self) {
        self.tasks.shutdown().await;
        for f in self.functions.values() {
            for p in &f.processes {
                p.stop().await;
            }
        }
    }

    /// The project root of this checkout (where template.yaml is).
    pub fn root() -> &'static Path {
        crate::workspace_root()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(bin_dir: &Path) -> Options {
        Options {
            root: PathBuf::from("."),
            template: None,
            bin_dir: bin_dir.to_path_buf(),
            stack: "s".into(),
            parameters: HashMap::new(),
            env: BTreeMap::new(),
            substitutes: BTreeMap::from([("a".to_owned(), "a-faults".to_owned())]),
            speed: 1,
            log_dir: None,
            endpoint: None,
            faults: None,
            only: None,
        }
    }

    fn spec(binary: &str, crate_dir: Option<PathBuf>) -> FunctionSpec {
        FunctionSpec {
            logical_id: "F".into(),
            binary: binary.into(),
            crate_dir,
            environment: BTreeMap::new(),
            queues: Vec::new(),
            schedules: Vec::new(),
            timeout_secs: 3,
            function_url: None,
        }
    }

    #[test]
    fn binaries_are_found_beside_ours_else_in_their_own_crates_target_directory() {
        let base = std::env::temp_dir().join(format!("mailroom-locate-{}", std::process::id()));
        let (ours, app) = (base.join("ours"), base.join("app"));
        let crate_dir = app.join("functions/audit");
        for dir in [&ours, &crate_dir, &app.join("target/debug")] {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        for file in [ours.join("a-faults"), app.join("target/debug/audit")] {
            std::fs::write(file, b"").expect("file");
        }
        let o = options(&ours);
        assert_eq!(
            locate(&o, &spec("a", None)).expect("substitute"),
            ours.join("a-faults")
        );
        assert_eq!(
            locate(&o, &spec("audit", Some(crate_dir.clone())))
                .expect("in its own target directory"),
            app.join("target/debug/audit").canonicalize().expect("path")
        );
        let missing = locate(&o, &spec("other", Some(crate_dir))).expect_err("not built");
        assert!(
            missing.to_string().contains("other is not built"),
            "{missing}"
        );
        std::fs::remove_dir_all(&base).expect("clean up");
    }

    #[test]
    fn a_variable_removed_locally_is_taken_out_of_the_settings_too() {
        let mut env = BTreeMap::from([
            ("KEEP".to_owned(), "1".to_owned()),
            (
                mailroom_lambda::config::SETTINGS.to_owned(),
                r#"{"SECRET_PARAMETER": "/x", "FORMAT": "json"}"#.to_owned(),
            ),
        ]);
        apply(
            &mut env,
            &BTreeMap::from([
                ("SECRET_PARAMETER".to_owned(), None),
                ("SECRET".to_owned(), Some("s".to_owned())),
            ]),
        );
        let read = mailroom_lambda::Env::from_lookup(|k| env.get(k).cloned());
        assert_eq!(read.string("SECRET_PARAMETER"), None);
        assert_eq!(read.string("FORMAT").as_deref(), Some("json"));
        assert_eq!(read.string("SECRET").as_deref(), Some("s"));
        assert_eq!(read.string("KEEP").as_deref(), Some("1"));
    }
}
