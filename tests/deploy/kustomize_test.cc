// deploy/k8s without a cluster: every kustomization renders with the kubectl on the PATH (the
// manifests keep to kustomize v2.0.3, Debian 12's kubectl 1.20, so any kubectl renders them),
// and the rendered objects agree with each other and with the daemon: the container config is
// configs/slo.yaml plus a listed set of overrides, probes hit the daemon's routes, the grace
// period outlasts the drain, the disk-tier volume sits at the configured path, and the
// monitoring, autoscaling and inference-gateway objects point at what exists.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "server/config.h"
#include "tests/deploy/deploy_util.h"

namespace strata::testing {
namespace {

using server::Config;

// The object, asserting it exists.
YAML::Node Get(const Rendered& r, const std::string& kind, const std::string& name) {
  YAML::Node n = FindObject(r, kind, name);
  EXPECT_TRUE(n.IsMap()) << kind << "/" << name << " missing in\n" << r.output;
  return n;
}

YAML::Node ServerContainer(const YAML::Node& deployment) {
  for (const YAML::Node& c : deployment["spec"]["template"]["spec"]["containers"]) {
    if (c["name"].as<std::string>("") == "strata") return c;
  }
  ADD_FAILURE() << "no container `strata`";
  return YAML::Node();
}

// The config the rendered ConfigMap hands the daemon.
Config MountedConfig(const Rendered& r) {
  YAML::Node cm = FindConfigMap(r, "strata-config");
  EXPECT_TRUE(cm.IsMap()) << r.output;
  auto c = server::ParseConfig(cm["data"]["strata.yaml"].as<std::string>(""), "strata.yaml");
  EXPECT_TRUE(c.ok()) << c.status();
  return c.value_or(Config());
}

int PortNumbered(const YAML::Node& container, const std::string& name) {
  for (const YAML::Node& p : container["ports"]) {
    if (p["name"].as<std::string>("") == name) return p["containerPort"].as<int>(-1);
  }
  return -1;
}

// Whether `selector` (matchLabels) picks a pod carrying `labels`.
bool Selects(const YAML::Node& selector, const YAML::Node& labels) {
  if (!selector.IsMap() || selector.size() == 0) return false;
  for (const auto& kv : selector) {
    if (labels[kv.first.as<std::string>()].as<std::string>("") != kv.second.as<std::string>()) {
      return false;
    }
  }
  return true;
}

TEST(KustomizeTest, EveryKustomizationRendersIntoNamedObjectsInOneNamespace) {
  for (const std::string& dir : Kustomizations()) {
    SCOPED_TRACE(dir);
    const Rendered r = Kustomize(dir);
    ASSERT_EQ(r.status, 0) << r.output;
    ASSERT_GE(r.docs.size(), 6u) << r.output;
    std::set<std::string> seen;
    for (const YAML::Node& doc : r.docs) {
      const std::string kind = doc["kind"].as<std::string>("");
      const std::string name = doc["metadata"]["name"].as<std::string>("");
      EXPECT_FALSE(doc["apiVersion"].as<std::string>("").empty()) << kind << "/" << name;
      EXPECT_TRUE(seen.insert(kind + "/" + name).second) << "twice: " << kind << "/" << name;
      if (kind != "Namespace") {
        EXPECT_EQ(doc["metadata"]["namespace"].as<std::string>(""), "strata")
            << kind << "/" << name;
      }
    }
  }
}

// The container config is configs/slo.yaml with exactly the overrides its header lists; a key
// changed in either file without updating the other fails here.
TEST(KustomizeTest, ContainerConfigIsSloYamlPlusItsListedOverrides) {
  auto deploy = server::LoadConfigFile(SourcePath("deploy/k8s/base/strata.yaml"));
  ASSERT_TRUE(deploy.ok()) << deploy.status();
  auto expected = server::LoadConfigFile(SourcePath("configs/slo.yaml"));
  ASSERT_TRUE(expected.ok()) << expected.status();
  expected->server.host = "0.0.0.0";
  expected->model.path = "Qwen/Qwen2.5-0.5B-Instruct";
  expected->engine.threads = 4;
  expected->kvcache.tiers.host.capacity_bytes = int64_t{2} << 30;
  expected->kvcache.tiers.disk.capacity_bytes = int64_t{16} << 30;
  expected->kvcache.tiers.disk.path = "/var/cache/strata/kv";
  expected->logging.format = "json";
  EXPECT_TRUE(deploy->server == expected->server);
  EXPECT_TRUE(deploy->model == expected->model);
  EXPECT_TRUE(deploy->engine == expected->engine);
  EXPECT_TRUE(deploy->kvcache == expected->kvcache);
  EXPECT_TRUE(deploy->policies == expected->policies);
  EXPECT_TRUE(deploy->slo_classes == expected->slo_classes);
  EXPECT_TRUE(deploy->scheduler == expected->scheduler);
  EXPECT_TRUE(deploy->metrics == expected->metrics);
  EXPECT_TRUE(deploy->logging == expected->logging);
  EXPECT_TRUE(*deploy == *expected);
}

TEST(KustomizeTest, CudaConfigIsTheBaseConfigOnTheCudaBackend) {
  auto base = server::LoadConfigFile(SourcePath("deploy/k8s/base/strata.yaml"));
  auto cuda = server::LoadConfigFile(SourcePath("deploy/k8s/overlays/cuda/strata.yaml"));
  ASSERT_TRUE(base.ok() && cuda.ok());
  EXPECT_EQ(cuda->engine.backend, "cuda");
  base->engine.backend = "cuda";
  EXPECT_TRUE(*cuda == *base);
  const Rendered r = Kustomize("overlays/cuda");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(MountedConfig(r) == *cuda);
}

TEST(KustomizeTest, DeploymentProbesDrainAndVolumesAgreeWithTheMountedConfig) {
  const Rendered r = Kustomize("overlays/cpu");
  ASSERT_EQ(r.status, 0) << r.output;
  const Config config = MountedConfig(r);
  EXPECT_TRUE(config == *server::LoadConfigFile(SourcePath("deploy/k8s/base/strata.yaml")));
  const YAML::Node d = Get(r, "Deployment", "strata");
  const YAML::Node pod = d["spec"]["template"]["spec"];
  const YAML::Node c = ServerContainer(d);
  EXPECT_EQ(c["image"].as<std::string>(""), "strata-cpu:latest");
  // The daemon is started on the mounted file, on the ports the config names.
  const auto args = c["args"].as<std::vector<std::string>>(std::vector<std::string>{});
  EXPECT_EQ(args, (std::vector<std::string>{"serve", "--config", "/etc/strata/strata.yaml"}));
  EXPECT_EQ(PortNumbered(c, "http"), config.server.http_port);
  EXPECT_EQ(PortNumbered(c, "grpc"), config.server.grpc_port);
  EXPECT_EQ(config.server.host, "0.0.0.0");
  // Probes: liveness /health, readiness /ready, a start-up allowance for loading the model.
  EXPECT_EQ(c["livenessProbe"]["httpGet"]["path"].as<std::string>(""), "/health");
  EXPECT_EQ(c["readinessProbe"]["httpGet"]["path"].as<std::string>(""), "/ready");
  EXPECT_EQ(c["startupProbe"]["httpGet"]["path"].as<std::string>(""), "/health");
  EXPECT_GE(c["startupProbe"]["periodSeconds"].as<int>(0) *
                c["startupProbe"]["failureThreshold"].as<int>(0),
            600);
  // SIGKILL comes only after preStop and the whole drain.
  const auto pre_stop = c["lifecycle"]["preStop"]["exec"]["command"].as<std::vector<std::string>>(
      std::vector<std::string>{});
  ASSERT_EQ(pre_stop.size(), 2u);
  EXPECT_GT(pod["terminationGracePeriodSeconds"].as<double>(0),
            std::stod(pre_stop[1]) + config.server.shutdown_grace_seconds);
  // Resources: requested, and the kernel threads match the CPUs requested.
  EXPECT_EQ(c["resources"]["requests"]["cpu"].as<std::string>(""),
            std::to_string(config.engine.threads));
  EXPECT_FALSE(c["resources"]["requests"]["memory"].as<std::string>("").empty());
  EXPECT_TRUE(pod["securityContext"]["runAsNonRoot"].as<bool>(false));
  EXPECT_NE(pod["securityContext"]["runAsUser"].as<int>(0), 0);
  // Volumes: the generated ConfigMap at /etc/strata, the disk tier at its configured path on an
  // emptyDir (this overlay), the HF cache where $HF_HOME points.
  std::map<std::string, std::string> mounts;
  for (const YAML::Node& m : c["volumeMounts"]) {
    mounts[m["name"].as<std::string>()] = m["mountPath"].as<std::string>();
  }
  EXPECT_EQ(mounts["config"], "/etc/strata");
  EXPECT_EQ(mounts["kv-disk"], config.kvcache.tiers.disk.path);
  EXPECT_GT(config.kvcache.tiers.disk.capacity_bytes, 0);
  std::map<std::string, YAML::Node> volumes;
  for (const YAML::Node& v : pod["volumes"]) volumes[v["name"].as<std::string>()] = v;
  EXPECT_EQ(volumes["config"]["configMap"]["name"].as<std::string>(""),
            FindConfigMap(r, "strata-config")["metadata"]["name"].as<std::string>("?"));
  EXPECT_TRUE(volumes["kv-disk"]["emptyDir"].IsMap());
  std::string hf_home;
  for (const YAML::Node& e : c["env"]) {
    if (e["name"].as<std::string>("") == "HF_HOME") hf_home = e["value"].as<std::string>("");
  }
  EXPECT_EQ(hf_home.rfind(mounts["models"] + "/", 0), 0u) << hf_home;
}

TEST(KustomizeTest, ServiceExposesHttpAndGrpcAsH2c) {
  const Rendered r = Kustomize("overlays/cpu");
  ASSERT_EQ(r.status, 0) << r.output;
  const YAML::Node s = Get(r, "Service", "strata");
  const YAML::Node d = Get(r, "Deployment", "strata");
  EXPECT_TRUE(Selects(s["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"]));
  std::map<std::string, YAML::Node> ports;
  for (const YAML::Node& p : s["spec"]["ports"]) ports[p["name"].as<std::string>()] = p;
  EXPECT_EQ(ports["http"]["port"].as<int>(0), 8000);
  EXPECT_EQ(ports["http"]["targetPort"].as<std::string>(""), "http");
  EXPECT_EQ(ports["grpc"]["port"].as<int>(0), 50051);
  EXPECT_EQ(ports["grpc"]["targetPort"].as<std::string>(""), "grpc");
  EXPECT_EQ(ports["grpc"]["appProtocol"].as<std::string>(""), "kubernetes.io/h2c");
}

TEST(KustomizeTest, PodMonitorAndAutoscalerPointAtTheDeployment) {
  const Rendered r = Kustomize("overlays/cpu");
  ASSERT_EQ(r.status, 0) << r.output;
  const YAML::Node d = Get(r, "Deployment", "strata");
  const YAML::Node pm = Get(r, "PodMonitor", "strata");
  EXPECT_TRUE(
      Selects(pm["spec"]["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"]));
  const YAML::Node endpoint = pm["spec"]["podMetricsEndpoints"][0];
  EXPECT_EQ(endpoint["path"].as<std::string>(""), "/metrics");
  EXPECT_GT(PortNumbered(ServerContainer(d), endpoint["port"].as<std::string>("")), 0);

  const YAML::Node hpa = Get(r, "HorizontalPodAutoscaler", "strata");
  EXPECT_EQ(hpa["apiVersion"].as<std::string>(""), "autoscaling/v2");
  EXPECT_EQ(hpa["spec"]["scaleTargetRef"]["kind"].as<std::string>(""), "Deployment");
  EXPECT_EQ(hpa["spec"]["scaleTargetRef"]["name"].as<std::string>(""), "strata");
  EXPECT_GT(hpa["spec"]["maxReplicas"].as<int>(0), 1);
  const YAML::Node metric = hpa["spec"]["metrics"][0];
  EXPECT_EQ(metric["type"].as<std::string>(""), "Pods");
  const std::string name = metric["pods"]["metric"]["name"].as<std::string>("");
  EXPECT_EQ(name, "strata_num_requests_waiting");
  // The HPA owns the replica count.
  EXPECT_FALSE(d["spec"]["replicas"].IsDefined());
  // The adapter rules serve that metric under that name.
  const YAML::Node adapter =
      YAML::LoadFile(SourcePath("deploy/prometheus/prometheus-adapter-rules.yaml"));
  const YAML::Node rule = adapter["rules"]["custom"][0];
  EXPECT_EQ(rule["name"]["as"].as<std::string>(""), name);
  EXPECT_NE(rule["seriesQuery"].as<std::string>("").find(name + "{"), std::string::npos);
}

TEST(KustomizeTest, CudaOverlayRequestsAGpuOnGpuNodes) {
  const Rendered r = Kustomize("overlays/cuda");
  ASSERT_EQ(r.status, 0) << r.output;
  const YAML::Node d = Get(r, "Deployment", "strata");
  const YAML::Node pod = d["spec"]["template"]["spec"];
  const YAML::Node c = ServerContainer(d);
  EXPECT_EQ(c["image"].as<std::string>(""), "strata-cuda:latest");
  EXPECT_EQ(c["resources"]["limits"]["nvidia.com/gpu"].as<int>(0), 1);
  EXPECT_EQ(pod["nodeSelector"]["nvidia.com/gpu.present"].as<std::string>(""), "true");
  ASSERT_TRUE(pod["tolerations"].IsSequence());
  EXPECT_EQ(pod["tolerations"][0]["key"].as<std::string>(""), "nvidia.com/gpu");
  // The base's probes and volumes survive the patch.
  EXPECT_EQ(c["readinessProbe"]["httpGet"]["path"].as<std::string>(""), "/ready");
  EXPECT_EQ(c["volumeMounts"].size(), 4u);
}

TEST(KustomizeTest, PvcOverlayPutsTheDiskTierOnAClaimOfOneReplica) {
  const Rendered r = Kustomize("overlays/pvc");
  ASSERT_EQ(r.status, 0) << r.output;
  const YAML::Node d = Get(r, "Deployment", "strata");
  const YAML::Node pvc = Get(r, "PersistentVolumeClaim", "strata-kv-disk");
  YAML::Node kv;
  for (const YAML::Node& v : d["spec"]["template"]["spec"]["volumes"]) {
    if (v["name"].as<std::string>("") == "kv-disk") kv = v;
  }
  ASSERT_TRUE(kv.IsMap());
  EXPECT_FALSE(kv["emptyDir"].IsDefined()) << "both an emptyDir and a claim";
  EXPECT_EQ(kv["persistentVolumeClaim"]["claimName"].as<std::string>(""), "strata-kv-disk");
  EXPECT_EQ(d["spec"]["strategy"]["type"].as<std::string>(""), "Recreate");
  EXPECT_FALSE(d["spec"]["strategy"]["rollingUpdate"].IsDefined());
  const YAML::Node hpa = Get(r, "HorizontalPodAutoscaler", "strata");
  EXPECT_EQ(hpa["spec"]["maxReplicas"].as<int>(0), 1);
  // The claim holds the configured capacity.
  const Config config = MountedConfig(r);
  const std::string size = pvc["spec"]["resources"]["requests"]["storage"].as<std::string>("");
  ASSERT_EQ(size.substr(size.size() - 2), "Gi");
  EXPECT_GE(std::stoll(size) << 30, config.kvcache.tiers.disk.capacity_bytes);
}

// The EPP flags name the model-server protocol's metrics in Strata's names; end_to_end_test.cc
// checks the same specs against a live exposition.
TEST(KustomizeTest, InferencePoolSelectsTheServerPodsAndNamesItsEndpointPicker) {
  const Rendered r = Kustomize("overlays/inference-gateway");
  ASSERT_EQ(r.status, 0) << r.output;
  const YAML::Node server = Get(r, "Deployment", "strata");
  const YAML::Node epp = Get(r, "Deployment", "strata-epp");
  const YAML::Node pool = Get(r, "InferencePool", "strata");
  EXPECT_EQ(pool["apiVersion"].as<std::string>(""), "inference.networking.k8s.io/v1");
  const YAML::Node selector = pool["spec"]["selector"]["matchLabels"];
  EXPECT_TRUE(Selects(selector, server["spec"]["template"]["metadata"]["labels"]));
  EXPECT_FALSE(Selects(selector, epp["spec"]["template"]["metadata"]["labels"]));
  EXPECT_EQ(pool["spec"]["targetPorts"][0]["number"].as<int>(0),
            PortNumbered(ServerContainer(server), "http"));
  // endpointPickerRef -> the EPP Service -> the EPP container's ext-proc port.
  const YAML::Node ref = pool["spec"]["endpointPickerRef"];
  const YAML::Node svc = Get(r, "Service", ref["name"].as<std::string>(""));
  EXPECT_TRUE(Selects(svc["spec"]["selector"], epp["spec"]["template"]["metadata"]["labels"]));
  const YAML::Node epp_container = epp["spec"]["template"]["spec"]["containers"][0];
  bool port_found = false;
  for (const YAML::Node& p : svc["spec"]["ports"]) {
    if (p["port"].as<int>(0) != ref["port"]["number"].as<int>(-1)) continue;
    port_found = PortNumbered(epp_container, p["targetPort"].as<std::string>("")) > 0;
  }
  EXPECT_TRUE(port_found);
  const auto args = epp_container["args"].as<std::vector<std::string>>(std::vector<std::string>{});
  auto has = [&](const std::string& arg) {
    return std::find(args.begin(), args.end(), arg) != args.end();
  };
  EXPECT_TRUE(has("--pool-name=strata"));
  EXPECT_TRUE(has("--total-queued-requests-metric=strata_num_requests_waiting"));
  EXPECT_TRUE(has("--total-running-requests-metric=strata_num_requests_running"));
  EXPECT_TRUE(has("--kv-cache-usage-percentage-metric=strata_kv_cache_usage_ratio{tier=device}"));
  EXPECT_TRUE(has("--cache-info-metric=strata_cache_config_info"));
  // The config file the EPP reads is the generated ConfigMap, mounted where --config-file points.
  const YAML::Node cm = FindConfigMap(r, "strata-epp-config");
  ASSERT_TRUE(cm.IsMap());
  EXPECT_TRUE(has("--config-file=/config/epp-config.yaml"));
  EXPECT_TRUE(cm["data"]["epp-config.yaml"].IsDefined());
  EXPECT_EQ(epp["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"].as<std::string>(""),
            cm["metadata"]["name"].as<std::string>());
  // RBAC for the EPP's service account, in the namespace the objects land in.
  const YAML::Node binding = Get(r, "RoleBinding", "strata-epp");
  EXPECT_EQ(binding["subjects"][0]["name"].as<std::string>(""),
            epp["spec"]["template"]["spec"]["serviceAccountName"].as<std::string>("?"));
  EXPECT_EQ(binding["subjects"][0]["namespace"].as<std::string>(""),
            epp["metadata"]["namespace"].as<std::string>("?"));
  // The route sends the Gateway's traffic to the pool.
  const YAML::Node backend = Get(r, "HTTPRoute", "strata")["spec"]["rules"][0]["backendRefs"][0];
  EXPECT_EQ(backend["kind"].as<std::string>(""), "InferencePool");
  EXPECT_EQ(backend["group"].as<std::string>(""), "inference.networking.k8s.io");
  EXPECT_EQ(backend["name"].as<std::string>(""), "strata");
}

}  // namespace
}  // namespace strata::testing
