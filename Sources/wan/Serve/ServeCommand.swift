import ArgumentParser
import Foundation
import Logging
import WanCore
import WanServe
import WanSystem

/// `wan serve`: the sidecar (HTTP API, Prometheus metrics, health) over MODELS_ROOT.
struct ServeCommand: WanCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the HTTP API, /metrics and /health/models over MODELS_ROOT until SIGTERM or SIGINT.",
        discussion: """
        The Model Availability API under /api/v1 (status, downloads, health, repair, fallback, analytics, storage, \
        cleanup, config), GET /health/models[/{id}], GET /metrics and the WebSocket /ws; docs/sidecar.md and \
        docs/openapi.yaml describe them. With --auth-token-file, every /api/v1 route and /ws need \
        `Authorization: Bearer TOKEN`; /health/models and /metrics stay open unless --auth-probes. Without it, only \
        requests for localhost, 127.0.0.1, ::1 or the listen address are answered, a web page on another origin \
        cannot change anything, and --listen must be a loopback address. Token files must not be readable by group \
        or others (chmod 600). Port 0 takes a free port, printed once listening.
        """)

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Address to listen on.", valueName: "host:port"))
    var listen = "127.0.0.1:8000"

    @Option(name: .customLong("auth-token-file"), help: ArgumentHelp("A file holding the bearer token the API requires.", valueName: "path"))
    var authTokenFile: String?

    @Flag(name: .customLong("auth-probes"), help: "Require the token on /health/models and /metrics too.")
    var authProbes = false

    @Option(name: .customLong("admin-token-file"),
            help: ArgumentHelp("A file holding the token the admin routes (PUT /config/update, POST /models/cleanup) require.", valueName: "path"))
    var adminTokenFile: String?

    @Option(name: .customLong("rate-limits"),
            help: ArgumentHelp("Requests per minute per client: 'off', or any of default:N,download:N,admin:N,probe:N.", valueName: "spec"))
    var rateLimits = "default:60,download:10,admin:30,probe:600"

    enum LogFormat: String, ExpressibleByArgument, CaseIterable { case json, text }

    @Option(name: .customLong("log-format"), help: "Logs on stderr: one JSON object per line, or text for humans.")
    var logFormat = LogFormat.json

    @Option(name: .customLong("schedule-interval"),
            help: ArgumentHelp("Seconds between checks whether scheduled GC or a health pass is due.", valueName: "seconds"))
    var scheduleInterval = 60.0

    func execute(_ output: Output) async throws {
        guard scheduleInterval >= 0.1, scheduleInterval <= 86400 else {
            throw OrchestratorError.configInvalid(key: "--schedule-interval", message: "must be from 0.1 to 86400 seconds, not \(scheduleInterval)")
        }
        let (host, port) = try Self.parse(listen)
        guard authTokenFile != nil || Self.isLoopback(host) else {
            throw OrchestratorError.configInvalid(key: "--listen", message: "\(listen) is not a loopback address: serving other machines needs --auth-token-file")
        }
        let token = try authTokenFile.map { try Self.readToken($0, option: "--auth-token-file") }
        let adminToken = try adminTokenFile.map { try Self.readToken($0, option: "--admin-token-file") }
        let limits: RateLimits
        do { limits = try RateLimits(parsing: rateLimits) } catch { throw OrchestratorError.configInvalid(key: "--rate-limits", message: error.description) }
        let context = try CommandContext(global, output: output)
        let level = JSONLogHandler.level(context.config.logLevel)
        let logger = Logger(label: "http") { [logFormat] label in
            guard logFormat == .json else {
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
            return JSONLogHandler(label: label, level: level)
        }
        let engine = try context.engine()
        guard !authProbes || token != nil else {
            throw OrchestratorError.configInvalid(key: "--auth-probes", message: "needs --auth-token-file (the token the probes must present)")
        }
        let root = engine.resolver.modelsRoot
        try await Sidecar(engine: engine, config: context.config, host: host, port: port, authToken: token, adminToken: adminToken,
                          protectProbes: authProbes,
                          rateLimits: limits, scheduleInterval: .milliseconds(Int(scheduleInterval * 1000)), logger: logger).run { host, bound in
            let shown = host.contains(":") ? "[\(host)]" : host
            output.say("wan serve: listening on http://\(shown):\(bound) (MODELS_ROOT \(root)\(token == nil ? ", loopback only" : ", bearer auth on /api/v1"))")
        }
        engine.shutdown()
    }

    /// The token in `path`, trimmed; a usage error when the file is missing, empty, or readable
    /// by group or others (what it guards is only as safe as the file).
    static func readToken(_ path: String, option: String) throws(OrchestratorError) -> String {
        let text: String
        do {
            let file = try FileDescriptor.open(path, .readOnly)
            defer { file.close() }
            let info = try file.info()
            guard info.kind == .regular else { throw OrchestratorError.configInvalid(key: option, message: "\(path) is not a regular file") }
            guard info.mode & 0o077 == 0 else {
                throw OrchestratorError.configInvalid(key: option, message: "\(path) has mode \(String(format: "%04o", info.mode & 0o7777)): a token file must be readable by its owner only (chmod 600 \(path))")
            }
            guard info.size <= 64 << 10 else { throw OrchestratorError.configInvalid(key: option, message: "\(path) is larger than 64 KiB: not a token") }
            text = String(decoding: try file.read(count: Int(info.size), at: 0), as: UTF8.self)
        } catch let error as OrchestratorError {
            throw error
        } catch {
            throw .configInvalid(key: option, message: "\(path) cannot be read: \(error)")
        }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { throw .configInvalid(key: option, message: "\(path) is empty") }
        return trimmed
    }

    /// `host:port` or `[v6]:port`; port 0 takes a free one.
    static func parse(_ listen: String) throws(OrchestratorError) -> (String, Int) {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65535).contains(port),
              colon != listen.startIndex else {
            throw .configInvalid(key: "--listen", message: "'\(listen)' is not host:port (e.g. 127.0.0.1:8000)")
        }
        var host = String(listen[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }

    /// Whether `host` is a loopback address or name: only this machine can connect.
    static func isLoopback(_ host: String) -> Bool { Sidecar.isLoopback(host) }
}
