import Foundation
import Testing
import WanTestSupport

/// deploy/kubernetes/: every manifest validates against the Kubernetes schemas (strict, two
/// versions), the ConfigMap's manifest and config load in `wan`, and the parts that make the
/// mount reach the pods are there (propagation, privileges, probes, the token's mode).
@Suite struct KubernetesManifestTests {
    static let directory = TestServers.repositoryRoot + "/deploy/kubernetes"
    static let versions = ["1.34.0", "1.37.0"]

    static var manifests: [String] {
        get throws {
            try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".yaml") }.sorted().map { directory + "/" + $0 }
        }
    }

    @Test(arguments: versions)
    func everyManifestValidatesStrictly(version: String) throws {
        let files = try Self.manifests
        #expect(files.count >= 5, "\(files)")
        let result = try Shell.run("/usr/bin/env", ["python3", "-m", "kubernetes_validate", "--strict", "--quiet", "-k", version] + files)
        #expect(result.status == 0, "kubernetes-validate \(version): \(result.output)")
    }

    /// The manifest and config in the ConfigMap are what wan reads without complaint.
    @Test func theConfigMapHoldsAManifestAndConfigWanAccepts() throws {
        let dir = try Scratch("wan-k8s")
        let extract = try Shell.run("/usr/bin/env", ["python3", "-c", """
            import sys, yaml
            doc = yaml.safe_load(open(sys.argv[1]))
            for key in ("models.toml", "config.toml"):
                open(sys.argv[2] + "/" + key, "w").write(doc["data"][key])
            """, Self.directory + "/configmap.yaml", dir.path])
        #expect(extract.status == 0, "\(extract.output)")
        let env = ["MODELS_ROOT": dir.path + "/root", "WAN_MODELS_MANIFEST": dir.path + "/models.toml", "WAN_CONFIG": dir.path + "/config.toml"]
        let validate = try WanProcess.run(["models", "validate-manifest"], environment: env)
        #expect(validate.status == 0, "\(validate.stderr)")
        let status = try WanProcess.run(["models", "status", "--json"], environment: env)
        #expect(status.status == 0, "the config loads: \(status.stderr)")
        #expect((try status.json()["models"] as? [[String: Any]])?.first?["model_id"] as? String == "t2v-A14B@2.2.0")
    }

    /// What makes it work on a node, checked field by field.
    @Test func theMountReachesThePodsAndTheSidecarIsSafeByDefault() throws {
        let check = try Shell.run("/usr/bin/env", ["python3", "-c", """
            import sys, yaml
            d = sys.argv[1]
            ds = yaml.safe_load(open(d + "/daemonset.yaml"))["spec"]["template"]["spec"]
            mount = next(c for c in ds["containers"] if c["name"] == "mount")
            sidecar = next(c for c in ds["containers"] if c["name"] == "sidecar")
            mnt = next(v for v in mount["volumeMounts"] if v["mountPath"] == "/mnt/wan")
            assert mnt["mountPropagation"] == "Bidirectional", mnt
            assert mount["securityContext"]["privileged"] is True
            assert "-f" in mount["args"], mount["args"]
            assert any(v["name"] == "fuse" and v["hostPath"]["type"] == "CharDevice" for v in ds["volumes"])
            assert sidecar["readinessProbe"]["httpGet"]["path"] == "/health/models"
            args = sidecar["args"]
            assert "--auth-token-file" in args and args[args.index("--listen") + 1].startswith("0.0.0.0"), args
            token = next(v for v in ds["volumes"] if v["name"] == "api-token")
            assert token["secret"]["defaultMode"] == 0o400, token
            pod = yaml.safe_load(open(d + "/inference-pod.yaml"))["spec"]
            for c in pod["initContainers"] + pod["containers"]:
                for v in c.get("volumeMounts", []):
                    if v["mountPath"] == "/mnt/wan":
                        assert v["mountPropagation"] == "HostToContainer", v
            wait = next(c for c in pod["initContainers"] if c["name"] == "wait-for-model")
            assert wait["args"][:2] == ["models", "wait"] and "--mount" in wait["args"], wait["args"]
            print("ok")
            """, Self.directory])
        #expect(check.status == 0 && check.output.contains("ok"), "\(check.output)")
    }
}
