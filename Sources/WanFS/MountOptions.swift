import Foundation
import WanCache
import WanCore

/// The options of `mount.wanfs MODELS_ROOT MOUNTPOINT -o ...` (mount(8)'s helper
/// convention: `-o` comma list, `-f` foreground, `-n` no mtab, `-v` verbose, `-s` sloppy).
public struct MountOptions: Sendable, Equatable {
    public var modelsRoot: String
    public var mountpoint: String
    /// `manifest=PATH` (default: the environment's / config's manifest).
    public var manifest: String?
    /// `verify=lazy|strict`.
    public var verify: VerifyMode = .lazy
    /// `allow_other`: other users may read the mount.
    public var allowOther = false
    /// `prefetch=SIZE|off`: the largest readahead window for a streaming reader.
    public var maxReadahead: Int64 = 256 << 20
    /// `max_connections=N`: parallel range requests (per mount).
    public var maxConnections: Int?
    /// `cache_max=SIZE`: the mount keeps MODELS_ROOT under this size (LRU GC every 10 minutes).
    public var cacheMax: Int64?
    /// `timeout=SECONDS`: per request (connect, stall). Default 30.
    public var timeout: Double?
    /// `retries=N`: per request. Default 3.
    public var retries: Int?
    /// `read_timeout=SECONDS`: the longest one read waits for its bytes, whatever the retries
    /// (then EIO). Default 60.
    public var readTimeout: Double?
    /// `min_rate=SIZE`: bytes per second below which a transfer counts as stalled. Default 16KiB.
    public var minRate: Int64?
    /// `hydrate=auto|lazy|open`: `auto` fetches a model's small files and safetensors headers
    /// once a load opens its weights; `open` also fetches a whole file in the background when it
    /// is opened; `lazy` fetches only what is read (and readahead).
    public var hydrateOnOpen = false
    public var hydrateModels = true
    /// `config=PATH`: a config file.
    public var config: String?
    /// `max_read=SIZE`: largest read the kernel sends. Default 992 KiB: libfuse 3.14 splices
    /// replies only below 1 MiB and copies larger ones (warm reads measured 1.4 GB/s at
    /// 1 MiB, 2.1 GB/s at 992 KiB).
    public var maxRead: Int = 992 << 10
    /// `passthrough=auto|off`: let the kernel read complete files straight from their blobs
    /// (FUSE passthrough; needs libfuse >= 3.17 and root). `auto` uses it when available.
    public var passthrough = true
    /// `direct_io=auto|off`: open files still being fetched for direct I/O, so a cold read
    /// fills one page cache (the partial file's), not two; needs Linux >= 6.6 for mmap of
    /// such opens, and `auto` uses it only then.
    public var directIO = true
    /// `trace=auto|record|off`: record each model's cold load as an access trace and replay
    /// a model's trace when it is loaded cold (`auto`), only record (`record`), or neither.
    public var traceRecord = true
    public var traceReplay = true
    /// `trace_budget=SIZE`: the most bytes one replay fetches (default: the whole trace).
    public var traceBudget: Int64?
    /// `stripe=on|off`: spread a file's range requests over its sources (the configuration's
    /// `stripe_sources` when not given).
    public var stripe: Bool?
    /// `debug`: libfuse's request log on stderr.
    public var debug = false
    /// `takeover`: take the FUSE connection of the daemon serving MOUNTPOINT (an upgrade or a
    /// restart without unmounting); options not given are the running daemon's.
    public var takeover = false
    /// The wanfs options given, in order (`takeover` aside): what a daemon taking this one over
    /// starts from.
    public var given: [String] = []
    /// `-f`: stay in the foreground.
    public var foreground = false
    /// `-v`: say what is happening.
    public var verbose = false

    public init(modelsRoot: String, mountpoint: String) {
        self.modelsRoot = modelsRoot
        self.mountpoint = mountpoint
    }

    /// Options fstab and mount(8) pass that mean nothing to wanfs (accepted, ignored).
    /// (`rw` too: mount(8) passes it by default; wanfs stays read-only and writes get EROFS.)
    static let ignored: Set<String> = ["ro", "rw", "defaults", "auto", "noauto", "user", "users", "nouser", "_netdev", "nofail",
                                       "nosuid", "nodev", "noexec", "exec", "suid", "dev", "noatime", "relatime", "atime",
                                       "default_permissions", "sync", "async"]
    static let known = ["manifest=", "verify=", "allow_other", "prefetch=", "max_connections=", "cache_max=", "timeout=",
                        "retries=", "read_timeout=", "min_rate=", "hydrate=", "config=", "max_read=", "passthrough=", "direct_io=", "trace=", "trace_budget=", "stripe=", "debug",
                        "takeover"]

    /// Parses `mount.wanfs` arguments: `MODELS_ROOT MOUNTPOINT [-o opts] [-f] [-n] [-v] [-s]`
    /// (options may come before or after the two paths, and `-o` may repeat).
    public static func parse(_ arguments: [String]) throws(OrchestratorError) -> MountOptions {
        var positional: [String] = []
        var optionLists: [String] = []
        var foreground = false, verbose = false, sloppy = false
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            switch argument {
            case "-o":
                guard index + 1 < arguments.count else { throw usage("-o needs a list of options") }
                optionLists.append(arguments[index + 1])
                index += 1
            case "-f": foreground = true
            case "-n": break   // no /etc/mtab to write
            case "-v": verbose = true
            case "-s": sloppy = true
            case "-h", "--help": throw usage("")
            default:
                if argument.hasPrefix("-o") && argument.count > 2 {
                    optionLists.append(String(argument.dropFirst(2)))
                } else if argument.hasPrefix("-") {
                    throw usage("unknown flag '\(argument)'")
                } else {
                    positional.append(argument)
                }
            }
            index += 1
        }
        guard positional.count == 2 else { throw usage("expected MODELS_ROOT and MOUNTPOINT, got \(positional.count) path(s)") }
        var options = MountOptions(modelsRoot: absolute(positional[0]), mountpoint: absolute(positional[1]))
        options.foreground = foreground
        options.verbose = verbose
        for list in optionLists {
            for item in list.split(separator: ",").map(String.init) where !item.isEmpty {
                try options.apply(item, sloppy: sloppy)
            }
        }
        return options
    }

    mutating func apply(_ item: String, sloppy: Bool) throws(OrchestratorError) {
        let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
        let key = parts[0]
        let value = parts.count > 1 ? parts[1] : nil
        func need() throws(OrchestratorError) -> String {
            guard let value, !value.isEmpty else { throw invalid(key, "needs a value (\(key)=...)") }
            return value
        }
        switch key {
        case "manifest": manifest = absolute(try need())
        case "config": config = absolute(try need())
        case "verify":
            guard let mode = VerifyMode(rawValue: try need()) else { throw invalid(key, "is '\(value ?? "")'; use verify=lazy or verify=strict") }
            verify = mode
        case "allow_other": allowOther = true
        case "prefetch":
            let text = try need()
            maxReadahead = ["off", "0", "none"].contains(text) ? 0 : try size(key, text, within: 1...(64 << 30))
        case "max_connections": maxConnections = try integer(key, try need(), 1...64)
        case "cache_max": cacheMax = try size(key, try need())
        case "timeout":
            guard let seconds = Double(try need()), seconds >= 1, seconds <= 3600 else { throw invalid(key, "must be seconds between 1 and 3600") }
            timeout = seconds
        case "retries": retries = try integer(key, try need(), 0...20)
        case "read_timeout":
            guard let seconds = Double(try need()), seconds >= 1, seconds <= 3600 else { throw invalid(key, "must be seconds between 1 and 3600") }
            readTimeout = seconds
        case "min_rate": minRate = try size(key, try need(), within: 1...(1 << 40))
        case "hydrate":
            switch try need() {
            case "auto": (hydrateOnOpen, hydrateModels) = (false, true)
            case "open": (hydrateOnOpen, hydrateModels) = (true, true)
            case "lazy", "none": (hydrateOnOpen, hydrateModels) = (false, false)
            default: throw invalid(key, "is '\(value ?? "")'; use hydrate=auto, hydrate=lazy or hydrate=open")
            }
        case "max_read": maxRead = Int(try size(key, try need(), within: 4096...(128 << 20)))
        case "passthrough":
            switch try need() {
            case "auto", "on": passthrough = true
            case "off": passthrough = false
            default: throw invalid(key, "is '\(value ?? "")'; use passthrough=auto or passthrough=off")
            }
        case "direct_io":
            switch try need() {
            case "auto", "on": directIO = true
            case "off": directIO = false
            default: throw invalid(key, "is '\(value ?? "")'; use direct_io=auto or direct_io=off")
            }
        case "trace":
            switch try need() {
            case "auto", "on": (traceRecord, traceReplay) = (true, true)
            case "record": (traceRecord, traceReplay) = (true, false)
            case "off": (traceRecord, traceReplay) = (false, false)
            default: throw invalid(key, "is '\(value ?? "")'; use trace=auto, trace=record or trace=off")
            }
        case "trace_budget": traceBudget = try size(key, try need())
        case "stripe":
            switch try need() {
            case "on", "auto": stripe = true
            case "off": stripe = false
            default: throw invalid(key, "is '\(value ?? "")'; use stripe=on or stripe=off")
            }
        case "debug": debug = true
        case "takeover":
            takeover = true
            return
        default:
            if Self.ignored.contains(key) || key.hasPrefix("x-") || key == "comment" { return }
            if sloppy { return }
            throw invalid(key, "is not a wanfs mount option (known: \(Self.known.joined(separator: ", ")); fstab's ro, defaults, noauto, _netdev, nofail, x-* are accepted)")
        }
        switch key {
        case "manifest": given.append("manifest=\(manifest ?? "")")
        case "config": given.append("config=\(config ?? "")")
        default: given.append(item)
        }
    }

    private func size(_ key: String, _ text: String, within limits: ClosedRange<Int64> = 1...(1 << 60)) throws(OrchestratorError) -> Int64 {
        let bytes: Int64
        do {
            bytes = try ByteSize.parse(text)
        } catch {
            throw invalid(key, "'\(text)' is not a size (e.g. 256MiB, 100GB)")
        }
        guard limits.contains(bytes) else {
            throw invalid(key, "must be between \(ByteSize.format(limits.lowerBound)) and \(ByteSize.format(limits.upperBound)), found '\(text)'")
        }
        return bytes
    }

    private func integer(_ key: String, _ text: String, _ range: ClosedRange<Int>) throws(OrchestratorError) -> Int {
        guard let n = Int(text), range.contains(n) else { throw invalid(key, "must be a whole number in \(range.lowerBound)...\(range.upperBound)") }
        return n
    }

    private func invalid(_ key: String, _ message: String) -> OrchestratorError {
        .configInvalid(key: "mount option \(key)", message: message)
    }

    private static func usage(_ message: String) -> OrchestratorError {
        .configInvalid(key: "mount.wanfs", message: (message.isEmpty ? "" : message + "; ")
            + "usage: mount.wanfs MODELS_ROOT MOUNTPOINT [-o manifest=PATH,verify=lazy|strict,allow_other,...] [-f] [-n] [-v]")
    }

    private static func absolute(_ path: String) -> String { URL(fileURLWithPath: path).standardizedFileURL.path }
    private func absolute(_ path: String) -> String { Self.absolute(path) }

    /// The orchestrator configuration these options describe: the config file and the
    /// environment, with MODELS_ROOT, the manifest, timeout, retries and connections from the options.
    public func configuration(environment: [String: String] = ProcessInfo.processInfo.environment) throws(OrchestratorError) -> OrchestratorConfig {
        var config = try OrchestratorConfig.load(environment: environment, configPath: config, modelsRoot: modelsRoot, manifestPath: manifest)
        if let timeout { config.requestTimeout = timeout }
        if let retries { config.retryAttempts = retries }
        if let readTimeout { config.readTimeout = readTimeout }
        if let minRate { config.minTransferRate = minRate }
        if let maxConnections { config.maxConnectionsPerSource = maxConnections }
        if let cacheMax { config.maxTotalSize = cacheMax }
        if let stripe { config.stripeSources = stripe }
        return config
    }
}
