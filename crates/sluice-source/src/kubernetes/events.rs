//! Kubernetes Events for rejected and conflicting Ingresses, so `kubectl describe ingress`
//! shows what `/api/v1/problems` shows.
//!
//! Only the leader records them: every replica translates the same objects into the same
//! problems, so Events from each replica would only repeat one another. Each distinct problem is
//! recorded once: the Event's name is derived from the Ingress's uid and the problem's text, so
//! a new leader (or a restarted one) that records it again gets 409 AlreadyExists instead of a
//! duplicate.

use super::status::StatusInput;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use sluice_model::{ObjectKind, Problem, Severity};
use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

/// The API server caps Event messages; longer ones are cut here rather than refused there.
const MAX_MESSAGE: usize = 1024;

pub(super) struct EventRecorder {
    client: Client,
    identity: String,
    /// Problems (by text) already recorded by this process.
    recorded: HashSet<String>,
    warned: bool,
}

impl EventRecorder {
    pub fn new(client: Client, identity: String) -> Self {
        EventRecorder {
            client,
            identity,
            recorded: HashSet::new(),
            warned: false,
        }
    }

    pub async fn record(&mut self, input: &StatusInput) {
        // Forget problems that went away, so the set stays as small as the current list; one
        // that comes back maps to the same Event name and is not recorded twice.
        let current: HashSet<String> = input.problems.iter().map(Problem::to_string).collect();
        self.recorded.retain(|text| current.contains(text));
        for problem in &input.problems {
            let Some(object) = &problem.object else {
                continue;
            };
            if object.kind != ObjectKind::Ingress || object.namespace.is_empty() {
                continue;
            }
            let text = problem.to_string();
            if self.recorded.contains(&text) {
                continue;
            }
            let key = sluice_store::NamespacedName::new(&object.namespace, &object.name);
            let Some(ingress) = input.store.ingresses.get(&key) else {
                continue;
            };
            let uid = ingress.object.metadata.uid.clone().unwrap_or_default();
            let event = self.event(problem, &text, &uid);
            let api: Api<Event> = Api::namespaced(self.client.clone(), &object.namespace);
            match api.create(&PostParams::default(), &event).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(err) => {
                    if !self.warned {
                        tracing::warn!(error = %err, "cannot record an Event for {object} (Sluice needs create on events); problems stay visible in /api/v1/problems");
                        self.warned = true;
                    }
                    continue;
                }
            }
            self.recorded.insert(text);
        }
    }

    fn event(&self, problem: &Problem, text: &str, uid: &str) -> Event {
        let object = problem
            .object
            .clone()
            .unwrap_or_else(|| sluice_model::ObjectRef::new(ObjectKind::Ingress, "", ""));
        let mut hasher = DefaultHasher::new();
        (uid, text).hash(&mut hasher);
        let prefix: String = object.name.chars().take(200).collect();
        let now = Time(Timestamp::now());
        let mut message: String = text.chars().take(MAX_MESSAGE).collect();
        if message.len() < text.len() {
            message.push('…');
        }
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{prefix}.{:016x}", hasher.finish())),
                namespace: Some(object.namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some("networking.k8s.io/v1".to_string()),
                kind: Some("Ingress".to_string()),
                name: Some(object.name.clone()),
                namespace: Some(object.namespace.clone()),
                uid: (!uid.is_empty()).then(|| uid.to_string()),
                ..ObjectReference::default()
            },
            reason: Some(reason(problem).to_string()),
            message: Some(message),
            type_: Some("Warning".to_string()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(EventSource {
                component: Some("sluice".to_string()),
                host: None,
            }),
            reporting_component: Some("sluice".to_string()),
            reporting_instance: Some(self.identity.clone()),
            ..Event::default()
        }
    }
}

/// `Rejected` when the Ingress (or part of it) is not served; `Conflict` when another Ingress
/// took precedence; `Warning` for anything else decided on the user's behalf.
pub(super) fn reason(problem: &Problem) -> &'static str {
    match problem.severity {
        Severity::Rejected => "Rejected",
        Severity::Warning
            if problem.reason.contains("precedence") || problem.reason.contains("already") =>
        {
            "Conflict"
        }
        Severity::Warning => "Warning",
    }
}
