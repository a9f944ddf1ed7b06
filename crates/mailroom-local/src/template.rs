//! The topology of `template.yaml`, provisioned on the emulator: the one source of truth.
//!
//! The template is read with cfn-lint's decoder (from the project venv), which turns the
//! YAML short forms into CloudFormation's long-form intrinsics. The subset of intrinsics the
//! template uses is resolved here (`Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::Join`, `Fn::If` and the
//! condition functions), and the resources a local pipeline needs are created through the SDK:
//! SNS topics, SQS queues (with their redrive policies, in dependency order), subscriptions
//! (raw delivery and filter policies), DynamoDB tables (the ledger). Functions are described,
//! not created: their binary, resolved environment and event sources, for a local runner.
//!
//! Resolving the subset ourselves, instead of translating SAM to CloudFormation and asking the
//! emulator's CloudFormation to deploy it, keeps the run offline and fast, and leaves out the
//! parts a local pipeline does not use (IAM, KMS, alarms, function URLs).
//!
//! Why one file of about 650 lines: the resolver and the provisioner are one recursion (resolving
//! `Fn::GetAtt Queue.Arn` creates the queue, whose properties need resolving in turn), over one
//! template's state; split, they would pass that state back and forth through every call.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::{Map, Value};

use crate::REGION;
use mailroom_lambda::sqs::{QueueArn, QueueUrl};

const DECODER: &str = include_str!("template_json.py");
const ACCOUNT: &str = "123456789012";

/// A template problem: unreadable, or using something outside the subset.
#[derive(Debug, thiserror::Error)]
#[error("template: {0}")]
pub struct TemplateError(pub String);

fn err(m: impl Into<String>) -> TemplateError {
    TemplateError(m.into())
}

/// An SQS event source of a function.
#[derive(Debug, Clone, PartialEq)]
pub struct SqsSource {
    /// The queue.
    pub queue: QueueUrl,
    /// Its ARN.
    pub arn: QueueArn,
    /// `BatchSize` (default 10).
    pub batch_size: i32,
    /// `MaximumBatchingWindowInSeconds` (default 0).
    pub batching_window_secs: i32,
    /// `ScalingConfig.MaximumConcurrency`, if set.
    pub maximum_concurrency: Option<i32>,
    /// Whether `ReportBatchItemFailures` is on.
    pub report_batch_item_failures: bool,
}

/// A function of the template, as a local runner needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    /// The logical id.
    pub logical_id: String,
    /// The cargo binary (`Metadata.BuildProperties.Binary`, else the one binary of the crate
    /// at `CodeUri`, as cargo-lambda finds it).
    pub binary: String,
    /// The crate's directory (`CodeUri`), when the template was read from a file.
    pub crate_dir: Option<std::path::PathBuf>,
    /// The environment, resolved against the emulator's resources.
    pub environment: BTreeMap<String, String>,
    /// SQS event sources.
    pub queues: Vec<SqsSource>,
    /// Schedule expressions (`rate(5 minutes)`).
    pub schedules: Vec<String>,
    /// `Timeout` (the function's, else the template's `Globals`, else Lambda's 3 s).
    pub timeout_secs: u64,
    /// `FunctionUrlConfig.AuthType`, when the function has a Function URL.
    pub function_url: Option<String>,
}

/// What was provisioned.
#[derive(Debug, Clone, Default)]
pub struct Provisioned {
    /// Queues by logical id: URL and ARN.
    pub queues: BTreeMap<String, (QueueUrl, QueueArn)>,
    /// Topic ARNs by logical id.
    pub topics: BTreeMap<String, String>,
    /// Table names by logical id.
    pub tables: BTreeMap<String, String>,
    /// Subscriptions made (logical ids).
    pub subscriptions: Vec<String>,
    /// The functions.
    pub functions: Vec<FunctionSpec>,
    /// Nested applications' outputs, by the application's logical id.
    pub outputs: BTreeMap<String, BTreeMap<String, String>>,
}

impl Provisioned {
    /// Adds what a nested application provisioned, its logical ids under `prefix/`.
    fn absorb(&mut self, prefix: &str, child: Self) {
        let at = |id: String| format!("{prefix}/{id}");
        self.queues
            .extend(child.queues.into_iter().map(|(k, v)| (at(k), v)));
        self.topics
            .extend(child.topics.into_iter().map(|(k, v)| (at(k), v)));
        self.tables
            .extend(child.tables.into_iter().map(|(k, v)| (at(k), v)));
        self.subscriptions
            .extend(child.subscriptions.into_iter().map(at));
        self.outputs
            .extend(child.outputs.into_iter().map(|(k, v)| (at(k), v)));
        self.functions
            .extend(child.functions.into_iter().map(|mut f| {
                f.logical_id = at(f.logical_id);
                f
            }));
    }
}

/// A decoded template.
#[derive(Debug, Clone)]
pub struct Template {
    doc: Value,
    /// Where it was read from and the venv that decoded it: nested applications' `Location`
    /// and functions' `CodeUri` are relative to its directory.
    origin: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// The SDK clients provisioning uses.
#[derive(Debug, Clone)]
pub struct Clients {
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// SNS.
    pub sns: aws_sdk_sns::Client,
    /// DynamoDB.
    pub dynamodb: aws_sdk_dynamodb::Client,
}

impl Template {
    /// Decodes `path` with the venv's cfn-lint.
    ///
    /// # Errors
    /// When the venv is missing or the template does not decode.
    pub fn load(venv: &Path, path: &Path) -> Result<Self, TemplateError> {
        let out = std::process::Command::new(venv.join("bin").join("python"))
            .arg("-c")
            .arg(DECODER)
            .arg(path)
            .output()
            .map_err(|e| {
                err(format!(
                    "cannot run the venv's python (scripts/setup.sh): {e}"
                ))
            })?;
        if !out.status.success() {
            return Err(err(format!(
                "{} does not decode: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let mut template = Self::from_json(&out.stdout)?;
        template.origin = Some((path.to_path_buf(), venv.to_path_buf()));
        Ok(template)
    }

    fn dir(&self) -> Option<&Path> {
        self.origin.as_ref().and_then(|(path, _)| path.parent())
    }

    /// A template already in JSON (long-form intrinsics).
    ///
    /// # Errors
    /// When it is not a JSON object with `Resources`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, TemplateError> {
        let doc: Value = serde_json::from_slice(bytes).map_err(|e| err(e.to_string()))?;
        if !doc["Resources"].is_object() {
            return Err(err("no Resources"));
        }
        Ok(Self { doc, origin: None })
    }

    fn resources(&self) -> &Map<String, Value> {
        self.doc["Resources"]
            .as_object()
            .expect("checked in from_json")
    }

    /// Creates the template's topics, queues, subscriptions and tables on the emulator behind
    /// `clients`, named as the template names them for `stack`, and describes its functions.
    ///
    /// # Errors
    /// When a resource uses an intrinsic outside the subset, or a call fails.
    pub async fn provision(
        &self,
        clients: &Clients,
        stack: &str,
        parameters: &HashMap<String, String>,
    ) -> Result<Provisioned, TemplateError> {
        self.provision_with_speed(clients, stack, parameters, 1)
            .await
    }

    /// [`Template::provision`], with queue visibility timeouts divided by `speed` (at least
    /// 10 s), so retries and redrive play out faster in demos and tests.
    ///
    /// # Errors
    /// As [`Template::provision`].
    pub async fn provision_with_speed(
        &self,
        clients: &Clients,
        stack: &str,
        parameters: &HashMap<String, String>,
        speed: u32,
    ) -> Result<Provisioned, TemplateError> {
        Provisioner {
            template: self,
            clients,
            stack,
            parameters,
            speed: speed.max(1),
            out: Provisioned::default(),
        }
        .run()
        .await
    }
}

impl Provisioner<'_> {
    /// Creates every resource, kind by kind (each creates what it references first).
    async fn run(mut self) -> Result<Provisioned, TemplateError> {
        let ids: Vec<(String, String)> = self
            .template
            .resources()
            .iter()
            .map(|(id, r)| {
                (
                    id.clone(),
                    r["Type"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        for kind in [
            "AWS::SNS::Topic",
            "AWS::SQS::Queue",
            "AWS::DynamoDB::Table",
            "AWS::SNS::Subscription",
            "AWS::Serverless::Application",
            "AWS::Serverless::Function",
        ] {
            for (id, _) in ids.iter().filter(|(_, t)| t == kind) {
                self.ensure(id).await?;
            }
        }
        Ok(self.out)
    }
}

struct Provisioner<'a> {
    template: &'a Template,
    clients: &'a Clients,
    stack: &'a str,
    parameters: &'a HashMap<String, String>,
    speed: u32,
    out: Provisioned,
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Provisioner<'_> {
    fn resource(&self, id: &str) -> Result<&Value, TemplateError> {
        self.template
            .resources()
            .get(id)
            .ok_or_else(|| err(format!("no resource {id}")))
    }

    fn parameter(&self, name: &str) -> Result<String, TemplateError> {
        if let Some(v) = self.parameters.get(name) {
            return Ok(v.clone());
        }
        self.template.doc["Parameters"][name]
            .get("Default")
            .and_then(scalar)
            .ok_or_else(|| err(format!("parameter {name} has no default; pass it")))
    }

    fn condition(&self, name: &str) -> Result<bool, TemplateError> {
        let c = &self.template.doc["Conditions"][name];
        if c.is_null() {
            return Err(err(format!("no condition {name}")));
        }
        self.truth(c)
    }

    fn truth(&self, v: &Value) -> Result<bool, TemplateError> {
        let Some((f, args)) = v.as_object().and_then(|o| o.iter().next()) else {
            return Err(err(format!("not a condition: {v}")));
        };
        match f.as_str() {
            "Fn::Equals" => {
                let [a, b] = args.as_array().map(Vec::as_slice).unwrap_or_default() else {
                    return Err(err("Fn::Equals takes two values"));
                };
                Ok(self.resolve_sync(a)? == self.resolve_sync(b)?)
            }
            "Fn::Not" => Ok(!self.truth(&args[0])?),
            "Fn::And" => args
                .as_array()
                .into_iter()
                .flatten()
                .try_fold(true, |acc, c| Ok(acc && self.truth(c)?)),
            "Fn::Or" => args
                .as_array()
                .into_iter()
                .flatten()
                .try_fold(false, |acc, c| Ok(acc || self.truth(c)?)),
            "Condition" => self.condition(args.as_str().unwrap_or_default()),
            other => Err(err(format!(
                "condition function {other} is outside the subset"
            ))),
        }
    }

    /// Resolves a value that names only parameters and pseudo parameters (conditions).
    fn resolve_sync(&self, v: &Value) -> Result<Value, TemplateError> {
        match v {
            Value::Object(o) if o.len() == 1 && o.contains_key("Ref") => {
                let name = o["Ref"].as_str().unwrap_or_default();
                Ok(Value::String(
                    self.pseudo(name).map_or_else(|| self.parameter(name), Ok)?,
                ))
            }
            other => Ok(other.clone()),
        }
    }

    fn pseudo(&self, name: &str) -> Option<String> {
        Some(match name {
            "AWS::StackName" => self.stack.to_owned(),
            "AWS::Region" => REGION.to_owned(),
            "AWS::AccountId" => ACCOUNT.to_owned(),
            "AWS::Partition" => "aws".to_owned(),
            "AWS::URLSuffix" => "amazonaws.com".to_owned(),
            _ => return None,
        })
    }

    /// Creates a resource (and what it references) once; returns its `Ref`.
    async fn ensure(&mut self, id: &str) -> Result<String, TemplateError> {
        if let Some((url, _)) = self.out.queues.get(id) {
            return Ok(url.to_string());
        }
        if let Some(arn) = self.out.topics.get(id) {
            return Ok(arn.clone());
        }
        if let Some(name) = self.out.tables.get(id) {
            return Ok(name.clone());
        }
        if self.out.functions.iter().any(|f| f.logical_id == id)
            || self.out.subscriptions.iter().any(|s| s == id)
            || self.out.outputs.contains_key(id)
        {
            return Ok(id.to_owned());
        }
        let r = self.resource(id)?.clone();
        let kind = r["Type"].as_str().unwrap_or_default();
        let props = &r["Properties"];
        match kind {
            "AWS::SNS::Topic" => {
                let name = self
                    .string(&props["TopicName"], &format!("{}-{id}", self.stack))
                    .await?;
                let arn = self
                    .clients
                    .sns
                    .create_topic()
                    .name(&name)
                    .send()
                    .await
                    .map_err(|e| {
                        err(format!(
                            "CreateTopic {name}: {}",
                            mailroom_lambda::error::describe(&e)
                        ))
                    })?
                    .topic_arn
                    .unwrap_or_default();
                self.out.topics.insert(id.to_owned(), arn.clone());
                Ok(arn)
            }
            "AWS::SQS::Queue" => {
                let name = self
                    .string(&props["QueueName"], &format!("{}-{id}", self.stack))
                    .await?;
                let mut attributes = Vec::new();
                use aws_sdk_sqs::types::QueueAttributeName as A;
                for (prop, attr) in [
                    ("VisibilityTimeout", A::VisibilityTimeout),
                    ("MessageRetentionPeriod", A::MessageRetentionPeriod),
                    ("DelaySeconds", A::DelaySeconds),
                ] {
                    if !props[prop].is_null() {
                        let mut value = self.string(&props[prop], "").await?;
                        if prop == "VisibilityTimeout" {
                            // Sped up, but never below 10 s: a batch that outlives its
                            // visibility is delivered twice, which a loaded machine would
                            // turn into noise.
                            let secs: u32 = value.parse().unwrap_or(30);
                            value = (secs / self.speed).max(secs.min(10)).to_string();
                        } else if prop == "DelaySeconds" {
                            // Sped up like the monitor's thresholds it is measured against.
                            let secs: u32 = value.parse().unwrap_or(0);
                            value = (secs / self.speed).to_string();
                        }
                        attributes.push((attr, value));
                    }
                }
                if name.ends_with(".fifo") {
                    attributes.push((A::FifoQueue, "true".into()));
                    attributes.push((A::ContentBasedDeduplication, "true".into()));
                }
                if !props["RedrivePolicy"].is_null() {
                    let policy = Box::pin(self.resolve(&props["RedrivePolicy"])).await?;
                    attributes.push((A::RedrivePolicy, policy.to_string()));
                }
                let (url, arn) = crate::create_queue(&self.clients.sqs, &name, &attributes)
                    .await
                    .map_err(|e| err(e.to_string()))?;
                // Tags name a consumer's queue for discovery (`mailroom:consumer`).
                if let Some(tags) = props["Tags"].as_array() {
                    let mut request = self.clients.sqs.tag_queue().queue_url(url.as_str());
                    for tag in tags {
                        let key = self.string(&tag["Key"], "").await?;
                        let value = self.string(&tag["Value"], "").await?;
                        request = request.tags(key, value);
                    }
                    if !tags.is_empty() {
                        request.send().await.map_err(|e| {
                            err(format!(
                                "tagging {name}: {}",
                                aws_sdk_sqs::error::DisplayErrorContext(&e)
                            ))
                        })?;
                    }
                }
                self.out.queues.insert(id.to_owned(), (url.clone(), arn));
                Ok(url.to_string())
            }
            "AWS::DynamoDB::Table" => {
                let name = self
                    .string(&props["TableName"], &format!("{}-{id}", self.stack))
                    .await?;
                // The ledger is the only table: created as `ledger::create_table` declares it,
                // whose key schema and index the template declares the same way.
                crate::create_table(&self.clients.dynamodb, &name)
                    .await
                    .map_err(|e| err(e.to_string()))?;
                self.out.tables.insert(id.to_owned(), name.clone());
                Ok(name)
            }
            "AWS::SNS::Subscription" => {
                let topic = self.string(&props["TopicArn"], "").await?;
                let endpoint = self.string(&props["Endpoint"], "").await?;
                let mut req = self
                    .clients
                    .sns
                    .subscribe()
                    .topic_arn(&topic)
                    .protocol(self.string(&props["Protocol"], "sqs").await?)
                    .endpoint(&endpoint);
                if !props["RawMessageDelivery"].is_null() {
                    req = req.attributes(
                        "RawMessageDelivery",
                        self.string(&props["RawMessageDelivery"], "false").await?,
                    );
                }
                let policy = Box::pin(self.resolve(&props["FilterPolicy"])).await?;
                if !policy.is_null() {
                    let text = match policy {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    req = req.attributes("FilterPolicy", text);
                    if let Some(scope) = scalar(&props["FilterPolicyScope"]) {
                        req = req.attributes("FilterPolicyScope", scope);
                    }
                }
                req.send().await.map_err(|e| {
                    err(format!(
                        "Subscribe {id}: {}",
                        mailroom_lambda::error::describe(&e)
                    ))
                })?;
                self.out.subscriptions.push(id.to_owned());
                Ok(id.to_owned())
            }
            "AWS::Serverless::Function" => {
                let spec = self.function(id, &r).await?;
                self.out.functions.push(spec);
                Ok(id.to_owned())
            }
            "AWS::Serverless::Application" => {
                self.application(id, props).await?;
                Ok(id.to_owned())
            }
            // IAM, KMS, alarms, policies: nothing a local pipeline runs.
            _ => Ok(id.to_owned()),
        }
    }

    /// A nested application with a local `Location`: its template provisioned as a stack of
    /// its own (`STACK-ID`, as CloudFormation names nested stacks after their parent), with
    /// the `Parameters` resolved here; what it creates is known under `ID/`.
    async fn application(&mut self, id: &str, props: &Value) -> Result<(), TemplateError> {
        let location = match Box::pin(self.resolve(&props["Location"])).await? {
            Value::String(s) if !s.contains("://") => s,
            other => {
                return Err(err(format!(
                    "{id}: Location {other} is not a local template file (the only kind a \
                     local run can read)"
                )));
            }
        };
        let (Some(dir), Some((_, venv))) = (self.template.dir(), &self.template.origin) else {
            return Err(err(format!(
                "{id}: a nested application needs the template read from a file"
            )));
        };
        let child = Template::load(venv, &dir.join(&location))?;
        let mut parameters = HashMap::new();
        for (name, value) in props["Parameters"].as_object().into_iter().flatten() {
            let v = Box::pin(self.resolve(value)).await?;
            if !v.is_null() {
                parameters.insert(name.clone(), scalar(&v).unwrap_or_else(|| v.to_string()));
            }
        }
        let stack = format!("{}-{id}", self.stack);
        let mut nested = Provisioner {
            template: &child,
            clients: self.clients,
            stack: &stack,
            parameters: &parameters,
            speed: self.speed,
            out: Provisioned::default(),
        };
        let mut outputs = BTreeMap::new();
        for (name, output) in child.doc["Outputs"].as_object().into_iter().flatten() {
            let v = Box::pin(nested.resolve(&output["Value"])).await?;
            outputs.insert(name.clone(), scalar(&v).unwrap_or_else(|| v.to_string()));
        }
        let out = Box::pin(nested.run()).await?;
        self.out.absorb(id, out);
        self.out.outputs.insert(id.to_owned(), outputs);
        Ok(())
    }

    async fn function(&mut self, id: &str, r: &Value) -> Result<FunctionSpec, TemplateError> {
        let props = &r["Properties"];
        let crate_dir = match (self.template.dir(), &props["CodeUri"]) {
            (Some(dir), code) if !code.is_null() => Some(dir.join(self.string(code, "").await?)),
            _ => None,
        };
        let binary = match (
            r["Metadata"]["BuildProperties"]["Binary"].as_str(),
            &crate_dir,
        ) {
            (Some(b), _) => b.to_owned(),
            (None, Some(dir)) => crate_binary(dir).map_err(|e| err(format!("{id}: {e}")))?,
            (None, None) => {
                return Err(err(format!(
                    "{id}: no Metadata.BuildProperties.Binary and no CodeUri to find it in"
                )));
            }
        };
        let mut environment = BTreeMap::new();
        let vars = Box::pin(self.resolve(&props["Environment"]["Variables"])).await?;
        for (k, v) in vars.as_object().into_iter().flatten() {
            environment.insert(k.clone(), scalar(v).unwrap_or_else(|| v.to_string()));
        }
        let (mut queues, mut schedules) = (Vec::new(), Vec::new());
        for (_, event) in props["Events"].as_object().into_iter().flatten() {
            let ep = &event["Properties"];
            match event["Type"].as_str() {
                Some("SQS") => {
                    let arn = self.string(&ep["Queue"], "").await?;
                    let (url, arn) = self
                        .out
                        .queues
                        .values()
                        .find(|(_, a)| a.as_str() == arn)
                        .cloned()
                        .ok_or_else(|| {
                            err(format!("{id}: event queue {arn} is not in the template"))
                        })?;
                    let number =
                        |v: Value, d: i32| scalar(&v).and_then(|s| s.parse().ok()).unwrap_or(d);
                    queues.push(SqsSource {
                        queue: url,
                        arn,
                        batch_size: number(Box::pin(self.resolve(&ep["BatchSize"])).await?, 10),
                        batching_window_secs: number(
                            Box::pin(self.resolve(&ep["MaximumBatchingWindowInSeconds"])).await?,
                            0,
                        ),
                        maximum_concurrency: scalar(
                            &Box::pin(self.resolve(&ep["ScalingConfig"]["MaximumConcurrency"]))
                                .await?,
                        )
                        .and_then(|s| s.parse().ok()),
                        report_batch_item_failures: ep["FunctionResponseTypes"]
                            .as_array()
                            .is_some_and(|t| t.iter().any(|x| x == "ReportBatchItemFailures")),
                    });
                }
                Some("Schedule" | "ScheduleV2") => {
                    schedules.push(self.string(&ep["Schedule"], "").await?);
                }
                _ => {}
            }
        }
        let timeout = if props["Timeout"].is_null() {
            self.template.doc["Globals"]["Function"]["Timeout"].clone()
        } else {
            props["Timeout"].clone()
        };
        let timeout_secs = scalar(&Box::pin(self.resolve(&timeout)).await?)
            .and_then(|t| t.parse().ok())
            .unwrap_or(3);
        let function_url = props["FunctionUrlConfig"].is_object().then(|| {
            scalar(&props["FunctionUrlConfig"]["AuthType"]).unwrap_or_else(|| "NONE".into())
        });
        Ok(FunctionSpec {
            function_url,
            logical_id: id.to_owned(),
            binary,
            crate_dir,
            environment,
            queues,
            schedules,
            timeout_secs,
        })
    }

    /// Resolves `v` to a string, `default` when it is absent.
    async fn string(&mut self, v: &Value, default: &str) -> Result<String, TemplateError> {
        if v.is_null() {
            return Ok(default.to_owned());
        }
        let r = Box::pin(self.resolve(v)).await?;
        scalar(&r).ok_or_else(|| err(format!("expected a string, got {r}")))
    }

    /// Resolves every intrinsic in `v`, creating referenced resources on the way. `Null` stands
    /// for `AWS::NoValue`.
    async fn resolve(&mut self, v: &Value) -> Result<Value, TemplateError> {
        let Value::Object(o) = v else {
            if let Value::Array(items) = v {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    let r = Box::pin(self.resolve(i)).await?;
                    if !r.is_null() {
                        out.push(r);
                    }
                }
                return Ok(Value::Array(out));
            }
            return Ok(v.clone());
        };
        if o.len() == 1 {
            let (f, args) = o.iter().next().expect("one entry");
            match f.as_str() {
                "Ref" => {
                    let name = args.as_str().unwrap_or_default();
                    if name == "AWS::NoValue" {
                        return Ok(Value::Null);
                    }
                    if let Some(p) = self.pseudo(name) {
                        return Ok(Value::String(p));
                    }
                    if self.template.doc["Parameters"].get(name).is_some() {
                        return Ok(Value::String(self.parameter(name)?));
                    }
                    return Ok(Value::String(Box::pin(self.ensure(name)).await?));
                }
                "Fn::GetAtt" => {
                    let (res, attr) = match args {
                        Value::Array(a) if a.len() == 2 => (
                            a[0].as_str().unwrap_or_default().to_owned(),
                            a[1].as_str().unwrap_or_default().to_owned(),
                        ),
                        Value::String(s) => {
                            let (r, a) = s
                                .split_once('.')
                                .ok_or_else(|| err(format!("bad GetAtt {s}")))?;
                            (r.to_owned(), a.to_owned())
                        }
                        _ => return Err(err(format!("bad GetAtt {args}"))),
                    };
                    return Ok(Value::String(self.attribute(&res, &attr).await?));
                }
                "Fn::Join" => {
                    let sep = args[0].as_str().unwrap_or_default().to_owned();
                    let parts = Box::pin(self.resolve(&args[1])).await?;
                    let texts: Vec<String> = parts
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(scalar)
                        .collect();
                    return Ok(Value::String(texts.join(&sep)));
                }
                "Fn::If" => {
                    let name = args[0].as_str().unwrap_or_default();
                    let branch = if self.condition(name)? {
                        &args[1]
                    } else {
                        &args[2]
                    };
                    return Box::pin(self.resolve(branch)).await;
                }
                "Fn::Sub" => {
                    let (text, vars) = match args {
                        Value::String(s) => (s.clone(), Map::new()),
                        Value::Array(a) if a.len() == 2 => (
                            a[0].as_str().unwrap_or_default().to_owned(),
                            a[1].as_object().cloned().unwrap_or_default(),
                        ),
                        _ => return Err(err(format!("bad Sub {args}"))),
                    };
                    return Ok(Value::String(self.sub(&text, &vars).await?));
                }
                "Fn::Select" => {
                    let index = scalar(&Box::pin(self.resolve(&args[0])).await?)
                        .and_then(|i| i.parse::<usize>().ok())
                        .ok_or_else(|| err(format!("bad Select index in {args}")))?;
                    let list = Box::pin(self.resolve(&args[1])).await?;
                    return list
                        .as_array()
                        .and_then(|l| l.get(index))
                        .cloned()
                        .ok_or_else(|| err(format!("Select {index} out of {list}")));
                }
                "Fn::Split" => {
                    let sep = args[0].as_str().unwrap_or_default().to_owned();
                    let text = scalar(&Box::pin(self.resolve(&args[1])).await?)
                        .ok_or_else(|| err(format!("bad Split {args}")))?;
                    return Ok(Value::Array(
                        text.split(sep.as_str())
                            .map(|p| Value::String(p.to_owned()))
                            .collect(),
                    ));
                }
                f if f.starts_with("Fn::") => {
                    return Err(err(format!(
                        "{f} is outside the subset this runner resolves"
                    )));
                }
                _ => {}
            }
        }
        let mut out = Map::new();
        for (k, val) in o {
            let r = Box::pin(self.resolve(val)).await?;
            if !r.is_null() {
                out.insert(k.clone(), r);
            }
        }
        Ok(Value::Object(out))
    }

    async fn sub(
        &mut self,
        text: &str,
        vars: &Map<String, Value>,
    ) -> Result<String, TemplateError> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| err(format!("unclosed ${{ in {text}")))?
                + start;
            let name = &rest[start + 2..end];
            let value = if let Some(v) = vars.get(name) {
                let r = Box::pin(self.resolve(v)).await?;
                scalar(&r).unwrap_or_else(|| r.to_string())
            } else if let Some((res, attr)) = name.split_once('.') {
                self.attribute(res, attr).await?
            } else {
                let r = Box::pin(self.resolve(&serde_json::json!({ "Ref": name }))).await?;
                scalar(&r).unwrap_or_default()
            };
            out.push_str(&value);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    async fn attribute(&mut self, res: &str, attr: &str) -> Result<String, TemplateError> {
        Box::pin(self.ensure(res)).await?;
        if let Some(name) = attr.strip_prefix("Outputs.") {
            return self
                .out
                .outputs
                .get(res)
                .and_then(|o| o.get(name))
                .cloned()
                .ok_or_else(|| err(format!("{res} has no output {name}")));
        }
        if let Some((url, arn)) = self.out.queues.get(res) {
            return match attr {
                "Arn" => Ok(arn.to_string()),
                "QueueName" => Ok(arn.name().to_owned()),
                "QueueUrl" => Ok(url.to_string()),
                _ => Err(err(format!("{res}.{attr} is outside the subset"))),
            };
        }
        if let Some(name) = self.out.tables.get(res) {
            return match attr {
                "Arn" => Ok(format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}")),
                _ => Err(err(format!("{res}.{attr} is outside the subset"))),
            };
        }
        if let Some(arn) = self.out.topics.get(res) {
            return match attr {
                "TopicArn" => Ok(arn.clone()),
                "TopicName" => Ok(arn.rsplit(':').next().unwrap_or_default().to_owned()),
                _ => Err(err(format!("{res}.{attr} is outside the subset"))),
            };
        }
        // Functions, keys and URLs: placeholders, not used by a local pipeline.
        Ok(format!("arn:aws:local:{REGION}:{ACCOUNT}:{res}/{attr}"))
    }
}

/// The binary cargo-lambda builds for the crate in `dir`: its one `[[bin]]`, else the package
/// (a crate with several binaries names one with `Metadata.BuildProperties.Binary`).
fn crate_binary(dir: &Path) -> Result<String, String> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .map_err(|e| format!("CodeUri {}: {e}", manifest.display()))?;
    let (mut section, mut package, mut bins) = (String::new(), None, Vec::new());
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_owned();
            continue;
        }
        let Some(value) = line
            .strip_prefix("name")
            .map(str::trim_start)
            .and_then(|l| l.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_owned())
        else {
            continue;
        };
        match section.as_str() {
            "[package]" => package = Some(value),
            "[[bin]]" => bins.push(value),
            _ => {}
        }
    }
    match (bins.as_slice(), package) {
        ([one], _) => Ok(one.clone()),
        ([], Some(p)) => Ok(p),
        ([], None) => Err(format!("{} names no package", manifest.display())),
        (_, _) => Err(format!(
            "{} has {} binaries ({}); keep one per consumer crate, as cargo-lambda needs",
            manifest.display(),
            bins.len(),
            bins.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crates_binary_is_its_one_bin_else_its_package() {
        let dir = std::env::temp_dir().join(format!("mailroom-crate-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let with = |manifest: &str| {
            std::fs::write(dir.join("Cargo.toml"), manifest).expect("manifest");
            crate_binary(&dir)
        };
        assert_eq!(
            with("[package]\nname = \"audit-log\"\nversion = \"0.1.0\"\n"),
            Ok("audit-log".to_owned())
        );
        assert_eq!(
            with(
                "[package]\nname = \"pkg\"\n\n[[bin]]\nname = \"other\"\npath = \"src/main.rs\"\n\n[dependencies]\nname-like = \"1\"\n"
            ),
            Ok("other".to_owned())
        );
        let two = with("[package]\nname = \"p\"\n[[bin]]\nname = \"a\"\n[[bin]]\nname = \"b\"\n")
            .expect_err("ambiguous");
        assert!(two.contains("2 binaries (a, b)"), "{two}");
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert!(
            crate_binary(&dir)
                .expect_err("no manifest")
                .contains("CodeUri")
        );
    }
}
