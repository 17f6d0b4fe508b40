import Foundation
import WanCore
import WanTestSupport
@testable import WanSources

/// Backends pointed at the local test servers, with test-friendly timeouts.
enum Servers {
    static func client(attempts: Int = 2, timeout: Double = 5) -> HTTPClient {
        HTTPClient(retry: RetryPolicy(attempts: attempts, backoffFactor: 2, baseDelay: 0.05, maxDelay: 0.5), requestTimeout: timeout)
    }

    static func s3(_ prefix: String, endpoint: String? = nil, key: String? = nil, secret: String? = nil, anonymous: Bool = false,
                   bucket: String = "models", client: HTTPClient = client()) throws -> S3Store {
        let settings = S3Store.Settings(
            endpoint: try endpoint ?? TestServers.value("WAN_TEST_S3_ENDPOINT"), region: "us-east-1",
            accessKeyID: anonymous ? nil : try key ?? TestServers.value("WAN_TEST_S3_ACCESS_KEY"),
            secretAccessKey: anonymous ? nil : try secret ?? TestServers.value("WAN_TEST_S3_SECRET_KEY"))
        return try S3Store(source: SourceURL(parsing: "s3://\(bucket)/\(prefix)"), settings: settings, client: client)
    }

    static func http(_ prefix: String, base: String? = nil, client: HTTPClient = client()) throws -> HttpStore {
        try HttpStore(source: SourceURL(parsing: (try base ?? TestServers.value("WAN_TEST_HTTP")) + "/" + prefix), client: client)
    }

    static func hub(_ repo: String, revision: String? = nil, token: String? = nil, client: HTTPClient = client()) throws -> HFStore {
        try HFStore(source: SourceURL(parsing: "hf://\(repo)" + (revision.map { "@\($0)" } ?? "")),
                    endpoint: TestServers.value("WAN_TEST_HF_HUB"), token: token, client: client)
    }

    static func olah(client: HTTPClient = client()) throws -> HFStore {
        try HFStore(source: SourceURL(parsing: "hf://wan-test/tiny-model"), endpoint: TestServers.value("WAN_TEST_HF_OLAH"),
                    token: nil, client: client)
    }

    static func rclone(_ prefix: String, client: HTTPClient = client()) throws -> S3Store {
        let settings = S3Store.Settings(endpoint: try TestServers.value("WAN_TEST_RCLONE_S3"), region: "us-east-1",
                                        accessKeyID: try TestServers.value("WAN_TEST_RCLONE_ACCESS_KEY"),
                                        secretAccessKey: try TestServers.value("WAN_TEST_RCLONE_SECRET_KEY"))
        return try S3Store(source: SourceURL(parsing: "s3://models/\(prefix)"), settings: settings, client: client)
    }

    /// Uploads through rclone's S3 API (files written into its folder are not seen until its cache expires).
    static func putRclone(_ key: String, _ data: Data) throws {
        try TestServers.putS3(key, data, endpoint: TestServers.value("WAN_TEST_RCLONE_S3"),
                              accessKey: TestServers.value("WAN_TEST_RCLONE_ACCESS_KEY"),
                              secretKey: TestServers.value("WAN_TEST_RCLONE_SECRET_KEY"))
    }

    static func faults(_ behaviour: String, client: HTTPClient = client()) throws -> HttpStore {
        try http(behaviour, base: TestServers.value("WAN_TEST_FAULTS"), client: client)
    }

    /// The sample file olah and the fixture both serve.
    static func sampleWeights() throws -> Data {
        try Data(contentsOf: URL(fileURLWithPath: try TestServers.value("WAN_TEST_STATE") + "/sample/weights.bin"))
    }
}

/// Reads `range` of `path` into memory.
func readRange(_ backend: any StorageBackend, _ path: String, _ range: Range<Int64>, fileSize: Int64? = nil) throws -> Data {
    let sink = DataSink(base: range.lowerBound)
    try backend.read(path, range: range, fileSize: fileSize, into: sink, cancel: .none)
    return Data(sink.bytes)
}

/// The error a throwing call produced, as a SourceError.
func sourceError(_ body: () throws -> Void) -> SourceError? {
    do {
        try body()
        return nil
    } catch let error as SourceError {
        return error
    } catch {
        return SourceError(.network, source: "?", message: "unexpected error type: \(error)")
    }
}
