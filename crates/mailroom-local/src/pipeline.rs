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
use crate::proxy::Upstreams;
use crate::runner::{self, Counters, FunctionProcess};
use crate::template::{Clients, FunctionSpec, Provisioned, Template};
use crate::{Moto, REGION};

/// How to bring the pipeline up.
#[derive(Debug, Clone)]
pub struct Options {
    /// The project root (template.yaml, the venv).
    pub root: PathBuf,
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
    tasks: JoinSet<()>,
    _moto: Option<Moto>,
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
        let template = Template::load(&venv, &options.root.join("template.yaml"))?;
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
        let traffic = Clients {
            sqs: aws_sdk_sqs::Client::new(&app),
            sns: aws_sdk_sns::Client::new(&app),
            dynamodb: aws_sdk_dynamodb::Client::new(&app),
        };
        let rie = runner::emulator(&venv)?;
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
            let binary = options.bin_dir.join(
                options
                    .substitutes
                    .get(&spec.binary)
                    .unwrap_or(&spec.binary),
            );
            if !binary.exists() {
                return Err(UpError::NotBuilt(binary));
            }
            let mut env = spec.environment.clone();
            env.insert("AWS_REGION".into(), REGION.into());
            env.insert("AWS_ACCESS_KEY_ID".into(), "local".into());
            env.insert("AWS_SECRET_ACCESS_KEY".into(), "local".into());
            env.insert("AWS_ENDPOINT_URL".into(), app_endpoint.clone());
            env.insert("AWS_LAMBDA_FUNCTION_NAME".into(), spec.logical_id.clone());
            // The emulator gives each invocation this deadline, as Lambda does.
            env.insert(
                "AWS_LAMBDA_FUNCTION_TIMEOUT".into(),
                spec.timeout_secs.to_string(),
            );
            for (k, v) in options.env.get(&spec.binary).into_iter().flatten() {
                match v {
                    Some(v) => env.insert(k.clone(), v.clone()),
                    None => env.remove(k),
                };
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
                for p in &processes {
                    tasks.spawn(runner::poll(
                        traffic.sqs.clone(),
                        source.clone(),
                        p.clone(),
                        counters.clone(),
                        options.speed,
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
