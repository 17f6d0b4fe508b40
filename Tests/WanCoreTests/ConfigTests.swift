import Foundation
import Testing
@testable import WanCore

@Suite struct ConfigTests {
    func tempFile(_ text: String) -> String {
        let path = NSTemporaryDirectory() + "wan-config-\(UUID().uuidString).toml"
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    @Test func defaultsMatchTheSeed() throws {
        let config = try OrchestratorConfig.load(environment: ["MODELS_ROOT": "/m"], manifestPath: "/x/models.toml")
        #expect(config.maxConcurrentDownloads == 4)
        #expect(config.downloadTimeout == 3600)
        #expect(config.retryAttempts == 3)
        #expect(config.retryBackoffFactor == 2.0)
        #expect(config.enableGarbageCollection)
        #expect(config.maxTotalSize == nil && config.maxModelAge == nil)
        #expect(config.enableMetrics)
        #expect(config.logLevel == "INFO")
        #expect(config.requestTimeout == 30)
        #expect(config.hfEndpoint == "https://huggingface.co")
        #expect(try config.resolver().modelsRoot == "/m")
    }

    @Test func environmentSetsPathsEndpointsAndSecrets() throws {
        let env = [
            "MODELS_ROOT": "/data/models", "WAN_MODELS_MANIFEST": "/etc/wan/models.toml", "WAN_LOCAL_ROOT": "/srv",
            "HF_TOKEN": "hf_secret", "HF_ENDPOINT": "http://127.0.0.1:9000", "AWS_ACCESS_KEY_ID": "AKIA",
            "AWS_SECRET_ACCESS_KEY": "s3cr3t", "AWS_ENDPOINT_URL": "http://127.0.0.1:8333", "AWS_REGION": "eu-west-1",
            "AWS_S3_FORCE_PATH_STYLE": "1",
        ]
        let config = try OrchestratorConfig.load(environment: env)
        #expect(config.modelsRoot == "/data/models")
        #expect(config.manifestPath == "/etc/wan/models.toml")
        #expect(config.localSourceRoot(manifestDirectory: "/etc/wan") == "/srv")
        #expect(config.hfEndpoint == "http://127.0.0.1:9000")
        #expect(config.s3EndpointURL == "http://127.0.0.1:8333")
        #expect(config.s3Region == "eu-west-1")
        #expect(config.s3ForcePathStyle)
        #expect(config.credentials.hfToken == "hf_secret")
        #expect(Set(config.credentials.secretValues) == ["hf_secret", "AKIA", "s3cr3t"])
        // Secrets never show in descriptions.
        #expect(!"\(config.credentials)".contains("hf_secret"))
        #expect(!"\(config)".contains("s3cr3t"))
    }

    @Test func precedenceIsFileThenEnvironmentThenFlags() throws {
        let file = tempFile("""
        models_root = "/from-file"
        manifest_path = "/file/models.toml"
        max_concurrent_downloads = 8
        max_total_size = "100GB"
        max_model_age = 30
        retry_attempts = 5
        http_headers = { "X-Mirror-Key" = "abc" }
        """)
        let fromFile = try OrchestratorConfig.load(environment: [:], configPath: file)
        #expect(fromFile.modelsRoot == "/from-file")
        #expect(fromFile.manifestPath == "/file/models.toml")
        #expect(fromFile.maxConcurrentDownloads == 8)
        #expect(fromFile.maxTotalSize == 100_000_000_000)
        #expect(fromFile.maxModelAge == 2_592_000.0)
        #expect(fromFile.retryAttempts == 5)
        #expect(fromFile.httpHeaders == ["X-Mirror-Key": "abc"])

        let env = try OrchestratorConfig.load(environment: ["WAN_CONFIG": file, "MODELS_ROOT": "/from-env"])
        #expect(env.modelsRoot == "/from-env")
        #expect(env.configFile != nil)

        let flags = try OrchestratorConfig.load(environment: ["WAN_CONFIG": file, "MODELS_ROOT": "/from-env"],
                                                modelsRoot: "/from-flag", manifestPath: "/flag.toml")
        #expect(flags.modelsRoot == "/from-flag")
        #expect(flags.manifestPath == "/flag.toml")
    }

    @Test(arguments: [
        ("max_concurrent_downloads = 0", "between 1 and 64"),
        ("retry_attempts = \"3\"", "expected an integer"),
        ("bogus_key = 1", "unknown key"),
        ("hf_token = \"x\"", "environment only"),
        ("max_total_size = \"10G\"", "ambiguous"),
        ("log_level = \"LOUD\"", "unknown level"),
        ("models_root = ", "TOML syntax error"),
    ])
    func badConfigFilesAreRejectedByKey(line: String, reason: String) {
        let file = tempFile(line)
        do {
            _ = try OrchestratorConfig.load(environment: [:], configPath: file)
            Issue.record("accepted \(line)")
        } catch {
            #expect(error.code == .configInvalid)
            #expect(error.description.contains(reason), "\(error)")
            #expect(error.description.contains(file) || error.description.contains("config file"))
        }
    }

    @Test func missingModelsRootIsAClearError() throws {
        let config = try OrchestratorConfig.load(environment: [:], manifestPath: "/m.toml")
        #expect(throws: OrchestratorError.configInvalid(key: "MODELS_ROOT", message: "not set; export MODELS_ROOT=/path/to/models or pass --models-root")) {
            try config.resolver()
        }
    }

    @Test func badBooleanEnvironmentIsRejected() {
        #expect(throws: OrchestratorError.self) {
            try OrchestratorConfig.load(environment: ["AWS_S3_FORCE_PATH_STYLE": "maybe"])
        }
    }
}
