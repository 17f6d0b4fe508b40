import ArgumentParser
import Foundation
import Logging
import WanCore
import WanServe

/// `wan serve`: the sidecar (HTTP API, Prometheus metrics, health) over MODELS_ROOT.
struct ServeCommand: WanCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the HTTP API, /metrics and /health/models over MODELS_ROOT until SIGTERM or SIGINT.",
        discussion: """
        Endpoints served so far: GET /health/models[/{id}], GET /metrics, GET /api/v1/models/status/detailed[/{id}], \
        GET /api/v1/models/storage, GET /api/v1/models/health[/{id}], POST /api/v1/models/health/{id}/check, GET /api/v1/config/current (see docs/sidecar.md). With --auth-token-file, every /api/v1 route needs \
        `Authorization: Bearer TOKEN`; /health/models and /metrics stay open.
        """)

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Address to listen on.", valueName: "host:port"))
    var listen = "127.0.0.1:8000"

    @Option(name: .customLong("auth-token-file"), help: ArgumentHelp("A file holding the bearer token the API requires.", valueName: "path"))
    var authTokenFile: String?

    func execute(_ output: Output) async throws {
        let (host, port) = try Self.parse(listen)
        var token: String?
        if let authTokenFile {
            guard let text = try? String(contentsOfFile: authTokenFile, encoding: .utf8),
                  case let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines), !trimmed.isEmpty else {
                throw OrchestratorError.configInvalid(key: "--auth-token-file", message: "\(authTokenFile) is missing, unreadable or empty")
            }
            token = trimmed
        }
        let context = try CommandContext(global, output: output)
        let engine = try context.engine()
        output.say("wan serve: listening on http://\(host):\(port) (MODELS_ROOT \(engine.resolver.modelsRoot)\(token == nil ? "" : ", bearer auth on /api/v1"))")
        try await Sidecar(engine: engine, config: context.config, host: host, port: port, authToken: token).run()
        engine.shutdown()
    }

    static func parse(_ listen: String) throws(OrchestratorError) -> (String, Int) {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (1...65535).contains(port),
              colon != listen.startIndex else {
            throw .configInvalid(key: "--listen", message: "'\(listen)' is not host:port (e.g. 127.0.0.1:8000)")
        }
        return (String(listen[..<colon]), port)
    }
}
