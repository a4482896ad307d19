//! The single-node cluster of `scripts/cluster` (a real kubelet, container
//! runtime, scheduler, controllers, kube-proxy and CoreDNS) and the
//! project's image built by `scripts/image`, for the tests that check the
//! product as shipped.
//!
//! [`Node::get`] returns `None` (after printing why) when the cluster is not
//! up or `CANAL_TEST_NODE_IMAGE` (the image `scripts/image` printed) is not
//! set; with `CANAL_TEST_REQUIRE_NODE=1` (what `scripts/test` sets) that is a
//! failure instead.

use std::path::PathBuf;
use std::process::{Command, Output};

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Where pods reach the MariaDB and ZooKeeper of `scripts/env` (the host's
/// end of the node's veth pair).
pub const HOST_IP: &str = "10.213.0.1";

pub struct Node {
    pub image: String,
    pub kubeconfig: PathBuf,
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

fn required() -> bool {
    std::env::var_os("CANAL_TEST_REQUIRE_NODE").is_some_and(|v| !v.is_empty() && v != "0")
}

impl Node {
    pub fn get(test: &str) -> Option<Node> {
        let problem = match std::env::var("CANAL_TEST_NODE_IMAGE") {
            Err(_) => Some("CANAL_TEST_NODE_IMAGE is not set (scripts/image prints it)".to_owned()),
            Ok(image) => {
                let status = Command::new(script("cluster")).arg("status").output();
                match status {
                    Ok(out) if out.status.success() => {
                        let kubeconfig = String::from_utf8_lossy(&out.stdout)
                            .lines()
                            .find_map(|l| l.strip_prefix("kubeconfig: ").map(str::to_owned))
                            .unwrap_or_default();
                        return Some(Node {
                            image,
                            kubeconfig: PathBuf::from(kubeconfig.trim()),
                        });
                    }
                    Ok(out) => Some(format!(
                        "scripts/cluster is not up:\n{}",
                        String::from_utf8_lossy(&out.stdout)
                    )),
                    Err(e) => Some(format!("cannot run scripts/cluster status: {e}")),
                }
            }
        };
        let why = problem.unwrap_or_default();
        if required() {
            panic!("{test}: no single-node cluster: {why}");
        }
        eprintln!("skipping {test}: no single-node cluster: {why}");
        None
    }

    pub async fn client(&self) -> Client {
        Client::try_from(self.config().await).expect("a client for the cluster")
    }

    /// A client that does not retry 429 (Too Many Requests) answers, as
    /// kube's default client does: an eviction the PodDisruptionBudget
    /// refuses must be seen refused, not retried until it is allowed.
    pub async fn client_without_retries(&self) -> Client {
        let mut config = self.config().await;
        config.default_retry = false;
        Client::try_from(config).expect("a client for the cluster")
    }

    async fn config(&self) -> kube::Config {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", self.kubeconfig.display()));
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("the cluster's kubeconfig is usable")
    }

    /// `scripts/cluster ARGS`; panics with its output when it fails.
    pub fn cluster(&self, args: &[&str]) -> String {
        let output = self.cluster_output(args);
        assert!(
            output.status.success(),
            "scripts/cluster {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn cluster_output(&self, args: &[&str]) -> Output {
        Command::new(script("cluster"))
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run scripts/cluster: {e}"))
    }

    /// The image's repository and tag, as the chart's values take them.
    pub fn image_parts(&self) -> (&str, &str) {
        self.image
            .rsplit_once(':')
            .expect("CANAL_TEST_NODE_IMAGE is repository:tag")
    }

    /// Tags the image under a second tag in the node's containerd (for a
    /// rolling upgrade to "another" image); returns repository:tag.
    pub fn retag(&self, tag: &str) -> String {
        let (repository, _) = self.image_parts();
        let target = format!("{repository}:{tag}");
        self.ctr(&["images", "tag", "--force", &self.image, &target]);
        target
    }

    /// SIGKILLs a container's process through the runtime (`containerd://ID`).
    pub fn kill_container(&self, container_id: &str) {
        let id = container_id
            .strip_prefix("containerd://")
            .unwrap_or(container_id);
        self.ctr(&["tasks", "kill", "--signal", "SIGKILL", id]);
    }

    /// [`Self::kill_container`], false instead of a panic when the task is
    /// not running (any more).
    pub fn try_kill_container(&self, container_id: &str) -> bool {
        let id = container_id
            .strip_prefix("containerd://")
            .unwrap_or(container_id);
        self.ctr_output(&["tasks", "kill", "--signal", "SIGKILL", id])
            .status
            .success()
    }

    /// `helm install` of the chart with its default values, only the image
    /// set to this node's.
    pub fn install_chart(&self, release: &str, namespace: &str) {
        let (repository, tag) = self.image_parts();
        self.cluster(&[
            "helm",
            "install",
            release,
            concat!(env!("CARGO_MANIFEST_DIR"), "/charts/canal-operator"),
            "-n",
            namespace,
            "--create-namespace",
            "--set",
            &format!("image.repository={repository}"),
            "--set",
            &format!("image.tag={tag}"),
            "--wait",
            "--timeout",
            "180s",
        ]);
    }

    fn ctr_output(&self, args: &[&str]) -> Output {
        let socket = self
            .kubeconfig
            .parent()
            .expect("the run directory")
            .join("containerd/containerd.sock");
        Command::new("ctr")
            .arg("--address")
            .arg(&socket)
            .args(["-n", "k8s.io"])
            .args(args)
            .output()
            .expect("ctr runs")
    }

    /// `ctr -n k8s.io ARGS` against the node's containerd; panics when it fails.
    fn ctr(&self, args: &[&str]) {
        let output = self.ctr_output(args);
        assert!(
            output.status.success(),
            "ctr {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
