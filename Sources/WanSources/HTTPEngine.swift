import CCurl
import Foundation
import Synchronization
import WanCore

/// One HTTP request for the engine.
public struct HTTPRequest: Sendable {
    public enum Method: String, Sendable { case get = "GET", head = "HEAD" }

    public var method: Method
    public var url: String
    /// Extra headers, sent in this order.
    public var headers: [(name: String, value: String)]
    /// Bytes to fetch; nil fetches the whole body.
    public var range: Range<Int64>?
    /// The remote file's size when known: a `200` without Content-Range is then accepted
    /// for a range that covers the whole file.
    public var fileSize: Int64?
    /// Seconds to establish the connection.
    public var connectTimeout: Double = 30
    /// Seconds without a single byte before the transfer is abandoned.
    public var stallTimeout: Double = 30
    /// Seconds for the whole transfer; nil: connect, plus the stall window, plus the bytes
    /// asked for at `minRate` (a slow body counts too).
    public var totalTimeout: Double?
    /// The slowest the body may arrive, in bytes per second averaged over `stallTimeout`,
    /// before the transfer is abandoned as stalled (0: only a transfer that receives nothing).
    public var minRate: Int64 = 0
    /// Receive-rate cap, shared with the other transfers that use the same limiter.
    public var limiter: BandwidthLimiter?

    public init(_ method: Method = .get, url: String, headers: [(name: String, value: String)] = [], range: Range<Int64>? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.range = range
    }
}

/// What came back. For a 2xx GET the body went to the sink; for other statuses the first
/// 64 KiB of the body are in `body` (error documents).
public struct HTTPResponse: Sendable {
    public let status: Int
    /// Header names lower-cased; a repeated header keeps its last value.
    public let headers: [String: String]
    public let body: [UInt8]
    /// Body bytes delivered to the sink.
    public let bytesReceived: Int64
    /// The URL that answered, without query string.
    public let url: String
    /// Connections the request had to open (0: it went over one already open).
    public internal(set) var newConnections = 0

    public init(status: Int, headers: [String: String], body: [UInt8], bytesReceived: Int64, url: String) {
        self.status = status
        self.headers = headers
        self.body = body
        self.bytesReceived = bytesReceived
        self.url = url
    }

    public func header(_ name: String) -> String? { headers[name.lowercased()] }

    public var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// `Content-Range: bytes first-last/total`, parsed as hostile input: digits only, no number
/// past what a file offset can hold, `first <= last < total`. Anything else is nil.
public struct ContentRange: Equatable, Sendable {
    public let range: Range<Int64>
    /// nil for `*`.
    public let total: Int64?

    public init?(header: String) {
        let parts = header.trimmingCharacters(in: .whitespaces).split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bytes" else { return nil }
        let spanAndTotal = parts[1].split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard spanAndTotal.count == 2 else { return nil }
        let bounds = spanAndTotal[0].split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard bounds.count == 2, let first = Int64(strictDecimal: bounds[0]), let last = Int64(strictDecimal: bounds[1]),
              first <= last, let end = last.checkedAdding(1) else { return nil }
        if spanAndTotal[1] == "*" {
            total = nil
        } else {
            guard let total = Int64(strictDecimal: spanAndTotal[1]), end <= total else { return nil }
            self.total = total
        }
        range = first..<end
    }
}

/// HTTP over libcurl: pooled easy handles (so connections are kept alive and reused),
/// bodies streamed into a ``ByteSink`` at their file offsets, and every response checked
/// against its request before a byte is written.
///
/// `perform` blocks the calling thread: call it from a dedicated thread, never from Swift
/// concurrency's cooperative pool.
public final class HTTPEngine: Sendable {
    private let idle = Mutex<[CurlHandle]>([])
    private let maxIdle: Int
    private let caBundle: String?

    /// - Parameters:
    ///   - maxIdleHandles: handles (each with its open connections) kept for reuse.
    ///   - caBundle: a CA file for TLS; default `CURL_CA_BUNDLE` or `SSL_CERT_FILE` when set
    ///     and present, else libcurl's built-in store.
    public init(maxIdleHandles: Int = 32, caBundle: String? = nil) {
        precondition(CurlLibrary.initialized, "libcurl failed to initialize")
        self.maxIdle = maxIdleHandles
        let env = ProcessInfo.processInfo.environment
        let candidate = caBundle ?? env["CURL_CA_BUNDLE"] ?? env["SSL_CERT_FILE"]
        self.caBundle = candidate.flatMap { FileManager.default.fileExists(atPath: $0) ? $0 : nil }
    }

    deinit {
        idle.withLock { handles in handles.removeAll() }
    }

    /// The process-wide engine.
    public static let shared = HTTPEngine()

    /// Runs one request. Returns the response for any HTTP status; throws for transport
    /// failures, cancellation, and 2xx responses that do not match the request (wrong
    /// Content-Range, a Range ignored, too many or too few bytes).
    public func perform(_ request: HTTPRequest, into sink: (any ByteSink)? = nil,
                        cancel: CancellationToken = .none) throws(SourceError) -> HTTPResponse {
        if let range = request.range, range.isEmpty {
            throw SourceError(.invalidRange, source: redacted(request.url), message: "empty range \(range.lowerBound)..<\(range.upperBound): nothing to fetch")
        }
        let handle = idle.withLock { $0.popLast() } ?? CurlHandle()
        defer { giveBack([handle]) }
        return try perform(request, on: handle, into: sink, cancel: cancel)
    }

    /// Runs one request on `handle` (which the caller holds, and gives back).
    private func perform(_ request: HTTPRequest, on handle: CurlHandle, into sink: (any ByteSink)?,
                         cancel: CancellationToken) throws(SourceError) -> HTTPResponse {
        let transfer = Transfer(request: request, sink: sink, cancel: cancel)
        let result = handle.perform(request, transfer: transfer, caBundle: caBundle)
        var response = try transfer.finish(curlCode: result.code, curlMessage: result.message)
        response.newConnections = result.newConnections
        return response
    }

    /// Puts handles back in the pool, as many as it keeps.
    private func giveBack(_ handles: [CurlHandle]) {
        idle.withLock { idle in
            for handle in handles where idle.count < maxIdle { idle.append(handle) }
        }
    }

    /// Opens up to `connections` connections to the host of `url` ahead of the reads that
    /// will use them: as many HEAD requests of `url` at once (no headers, so no credentials),
    /// each on a handle of its own taken from the pool up front (a HEAD that ends early must
    /// not hand its handle to the next), which then go back to the pool with their connection
    /// open. Blocks until they are done; best effort (a host that does not answer is the
    /// reads' to report). Returns the connections it opened.
    ///
    /// A handle keeps at most 5 idle connections (libcurl's default): warming more than 5
    /// hosts lets the first ones' connections go.
    @discardableResult
    public func warm(_ url: String, connections: Int, timeout: Double, cancel: CancellationToken = .none) -> Int {
        let count = max(1, min(connections, maxIdle))
        let handles = idle.withLock { idle in (0..<count).map { _ in idle.popLast() } }.map { $0 ?? CurlHandle() }
        defer { giveBack(handles) }
        let opened = Atomic<Int>(0)
        let group = DispatchGroup()
        for handle in handles {
            group.enter()
            Thread {
                defer { group.leave() }
                var request = HTTPRequest(.head, url: url)
                (request.connectTimeout, request.stallTimeout, request.totalTimeout) = (timeout, timeout, timeout)
                if let response = try? self.perform(request, on: handle, into: nil, cancel: cancel) {
                    opened.add(response.newConnections, ordering: .relaxed)
                }
            }.start()
        }
        group.wait()
        return opened.load(ordering: .relaxed)
    }
}

extension HTTPRequest {
    /// The minimum rate this request is held to: `minRate`, lowered under a bandwidth cap so
    /// that a transfer the cap slows down is not taken for a stalled one.
    var effectiveMinRate: Int64 {
        guard let cap = limiter?.bytesPerSecond, cap > 0 else { return minRate }
        return min(minRate, cap / 64)
    }

    /// Seconds the whole request may take: `totalTimeout`, else connecting, the stall window,
    /// and the bytes asked for at the minimum rate.
    var deadline: Double {
        if let totalTimeout { return totalTimeout }
        let rate = Double(max(1, effectiveMinRate))
        let bytes = Double(range.map { $0.count } ?? 0)
        return connectTimeout + stallTimeout + (effectiveMinRate > 0 ? bytes / rate : 86400)
    }
}

/// Seconds as libcurl's milliseconds, held within what a `long` option takes (never a trap).
func milliseconds(_ seconds: Double) -> Int {
    guard seconds.isFinite else { return Int(Int32.max) }
    return Int(max(1, min(seconds * 1000, Double(Int32.max))))
}

/// One easy handle. Used by one thread at a time (the pool hands it out exclusively).
final class CurlHandle: @unchecked Sendable {
    private let raw: UnsafeMutableRawPointer
    private let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)

    init() {
        guard let raw = curl_easy_init() else { fatalError("curl_easy_init failed (out of memory)") }
        self.raw = raw
    }

    deinit {
        curl_easy_cleanup(raw)
        errorBuffer.deallocate()
    }

    func perform(_ request: HTTPRequest, transfer: Transfer, caBundle: String?) -> (code: CURLcode, message: String, newConnections: Int) {
        curl_easy_reset(raw)   // clears options, keeps live connections and caches
        errorBuffer[0] = 0
        var headerList: UnsafeMutablePointer<curl_slist>?
        for (name, value) in request.headers { headerList = curl_slist_append(headerList, "\(name): \(value)") }
        defer { curl_slist_free_all(headerList) }

        let context = Unmanaged.passUnretained(transfer).toOpaque()
        _ = wan_curl_setopt_string(raw, CURLOPT_URL, request.url)
        // Only http and https, ever: a URL or a redirect naming file://, gopher://, dict://,
        // ftp:// ... is refused by libcurl itself (redirects are followed by HTTPClient, which
        // refuses them too).
        _ = wan_curl_setopt_string(raw, CURLOPT_PROTOCOLS_STR, "http,https")
        _ = wan_curl_setopt_string(raw, CURLOPT_REDIR_PROTOCOLS_STR, "http,https")
        _ = wan_curl_setopt_long(raw, CURLOPT_NOSIGNAL, 1)
        _ = wan_curl_setopt_long(raw, CURLOPT_FOLLOWLOCATION, 0)
        _ = wan_curl_setopt_long(raw, CURLOPT_TCP_KEEPALIVE, 1)
        _ = wan_curl_setopt_long(raw, CURLOPT_BUFFERSIZE, 512 * 1024)
        _ = wan_curl_setopt_long(raw, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_2TLS))
        _ = wan_curl_setopt_long(raw, CURLOPT_CONNECTTIMEOUT_MS, milliseconds(request.connectTimeout))
        // Stalled: below the minimum rate for a whole stall window (a frozen origin sends
        // nothing; a trickling one a few bytes a second). A shaped download lowers it.
        _ = wan_curl_setopt_long(raw, CURLOPT_LOW_SPEED_LIMIT, max(1, Int(request.effectiveMinRate)))
        _ = wan_curl_setopt_long(raw, CURLOPT_LOW_SPEED_TIME, milliseconds(request.stallTimeout) / 1000 + 1)
        _ = wan_curl_setopt_long(raw, CURLOPT_TIMEOUT_MS, milliseconds(request.deadline))
        if let caBundle { _ = wan_curl_setopt_string(raw, CURLOPT_CAINFO, caBundle) }
        if request.method == .head { _ = wan_curl_setopt_long(raw, CURLOPT_NOBODY, 1) }
        if let range = request.range { _ = wan_curl_setopt_string(raw, CURLOPT_RANGE, "\(range.lowerBound)-\(range.upperBound - 1)") }
        _ = wan_curl_setopt_slist(raw, CURLOPT_HTTPHEADER, headerList)
        _ = wan_curl_setopt_pointer(raw, CURLOPT_ERRORBUFFER, errorBuffer)
        _ = wan_curl_setopt_write_function(raw, curlWriteCallback)
        _ = wan_curl_setopt_pointer(raw, CURLOPT_WRITEDATA, context)
        _ = wan_curl_setopt_header_function(raw, curlHeaderCallback)
        _ = wan_curl_setopt_pointer(raw, CURLOPT_HEADERDATA, context)
        _ = wan_curl_setopt_xferinfo_function(raw, curlProgressCallback)
        _ = wan_curl_setopt_pointer(raw, CURLOPT_XFERINFODATA, context)
        _ = wan_curl_setopt_long(raw, CURLOPT_NOPROGRESS, 0)

        let code = curl_easy_perform(raw)
        var status = 0
        _ = wan_curl_getinfo_long(raw, CURLINFO_RESPONSE_CODE, &status)
        transfer.curlStatus = status
        var connects = 0
        _ = wan_curl_getinfo_long(raw, CURLINFO_NUM_CONNECTS, &connects)
        let detail = String(cString: errorBuffer)
        return (code, detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail, connects)
    }
}

// C callbacks: non-capturing, so they convert to C function pointers. `userdata` is the Transfer.

private let curlWriteCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
    data, size, count, userdata in
    guard let userdata else { return 0 }
    let transfer = Unmanaged<Transfer>.fromOpaque(userdata).takeUnretainedValue()
    return transfer.receiveBody(UnsafeRawBufferPointer(start: data, count: size * count)) ? size * count : 0
}

private let curlHeaderCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
    data, size, count, userdata in
    guard let userdata else { return 0 }
    let transfer = Unmanaged<Transfer>.fromOpaque(userdata).takeUnretainedValue()
    transfer.receiveHeader(UnsafeRawBufferPointer(start: data, count: size * count))
    return size * count
}

private let curlProgressCallback: @convention(c) (UnsafeMutableRawPointer?, curl_off_t, curl_off_t, curl_off_t, curl_off_t) -> Int32 = {
    userdata, _, _, _, _ in
    guard let userdata else { return 0 }
    return Unmanaged<Transfer>.fromOpaque(userdata).takeUnretainedValue().cancel.isCancelled ? 1 : 0
}

/// The state of one transfer: headers as they arrive, the checks on the first body byte,
/// and the bytes written. Touched only by the thread running the transfer.
final class Transfer: @unchecked Sendable {
    let request: HTTPRequest
    let sink: (any ByteSink)?
    let cancel: CancellationToken
    var curlStatus = 0

    private var status = 0
    private var headers: [String: String] = [:]
    /// Headers that came more than once with different values (a response must not say two
    /// things about its own length or range).
    private var conflicting = Set<String>()
    private var errorBody: [UInt8] = []
    private var received: Int64 = 0
    /// Where body byte 0 goes in the file, once the response is accepted.
    private var bodyOffset: Int64?
    private var expectedLength: Int64?
    private var failure: SourceError?
    private var checkedResponse = false

    private static let maxErrorBody = 64 * 1024

    init(request: HTTPRequest, sink: (any ByteSink)?, cancel: CancellationToken) {
        self.request = request
        self.sink = sink
        self.cancel = cancel
    }

    private var source: String { redacted(request.url) }

    func receiveHeader(_ line: UnsafeRawBufferPointer) {
        let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if text.hasPrefix("HTTP/") {
            // A new response (after 100-continue or a proxy CONNECT): start over.
            headers = [:]
            conflicting = []
            let fields = text.split(separator: " ")
            status = fields.count > 1 ? Int64(strictDecimal: fields[1]).map { Int($0) } ?? 0 : 0
            return
        }
        guard let colon = text.firstIndex(of: ":") else { return }
        let name = text[..<colon].lowercased()
        let value = text[text.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        if let earlier = headers[name], earlier != value { conflicting.insert(name) }
        headers[name] = value
    }

    /// Returns false to abort the transfer.
    func receiveBody(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if !checkedResponse {
            checkedResponse = true
            if (200..<300).contains(status) {
                if let error = acceptSuccess() { failure = error; return false }
            }
        }
        guard (200..<300).contains(status) else {
            let room = Transfer.maxErrorBody - errorBody.count
            if room > 0 { errorBody.append(contentsOf: bytes.prefix(room)) }
            return true
        }
        if cancel.isCancelled {
            failure = SourceError(.cancelled, source: source, message: "cancelled")
            return false
        }
        request.limiter?.consume(bytes.count)
        if let expectedLength, received + Int64(bytes.count) > expectedLength {
            failure = SourceError(.protocolViolation, source: source, message: "the server sent more than the \(expectedLength) bytes asked for", status: status)
            return false
        }
        do {
            try sink?.write(bytes, at: (bodyOffset ?? 0) + received)
        } catch let error as SourceError {
            failure = error
            return false
        } catch {
            let code = (error as? any CodedError)?.code
            failure = SourceError(.localIO, source: source, message: "writing fetched bytes failed: \(error)", localCode: code)
            return false
        }
        received += Int64(bytes.count)
        return true
    }

    /// Checks a 2xx response against the request before any body byte is used. Every number
    /// in it is hostile until checked: a bad one fails this request (the next source is asked).
    private func acceptSuccess() -> SourceError? {
        for name in ["content-length", "content-range"] where conflicting.contains(name) {
            return SourceError(.protocolViolation, source: source, message: "the response has several different \(name) headers", status: status)
        }
        var contentLength: Int64?
        if let text = headers["content-length"] {
            guard let value = Int64(strictDecimal: text) else {
                return SourceError(.protocolViolation, source: source, message: "unusable Content-Length '\(text.prefix(64))'", status: status)
            }
            contentLength = value
        }
        guard let range = request.range else {
            bodyOffset = 0
            expectedLength = contentLength
            return nil
        }
        if let header = headers["content-range"] {
            // Judged by Content-Range, not by status: some servers answer 200 with a Content-Range.
            guard let contentRange = ContentRange(header: header) else {
                return SourceError(.protocolViolation, source: source, message: "unparseable Content-Range '\(header.prefix(100))'", status: status)
            }
            if let total = contentRange.total, let size = request.fileSize, total != size {
                return SourceError(.protocolViolation, source: source,
                                   message: "the server's file is \(total) bytes, the manifest says \(size) (\(header.prefix(100)))", status: status)
            }
            guard contentRange.range == range else {
                return SourceError(.protocolViolation, source: source,
                                   message: "asked for bytes \(range.lowerBound)-\(range.upperBound - 1) but the server sent \(header.prefix(100))", status: status)
            }
            if let contentLength, contentLength != Int64(range.count) {
                return SourceError(.protocolViolation, source: source, message: "Content-Length \(contentLength) does not match the \(range.count) bytes of \(header.prefix(100))", status: status)
            }
        } else if status == 200, range.lowerBound == 0, let size = request.fileSize, range.upperBound == size,
                  contentLength == nil || contentLength == size {
            // The whole file was asked for and the whole file came back.
        } else {
            return SourceError(.protocolViolation, source: source, message: "the server ignored the Range header (HTTP \(status) without Content-Range); it cannot serve partial reads", status: status)
        }
        bodyOffset = range.lowerBound
        expectedLength = Int64(range.count)
        return nil
    }

    /// Turns the outcome into a response or an error.
    func finish(curlCode: CURLcode, curlMessage: String) throws(SourceError) -> HTTPResponse {
        if let failure { throw failure }
        if cancel.isCancelled { throw SourceError(.cancelled, source: source, message: "cancelled") }
        if status == 0 { status = curlStatus }
        guard curlCode == CURLE_OK else { throw transportError(curlCode, curlMessage) }
        if (200..<300).contains(status) && request.method == .get {
            if !checkedResponse, let error = acceptSuccess() { throw error }   // empty body: check anyway
            if let expectedLength, received != expectedLength {
                throw SourceError(.protocolViolation, source: source, message: "received \(received) of \(expectedLength) bytes", status: status)
            }
        }
        return HTTPResponse(status: status, headers: headers, body: errorBody, bytesReceived: received, url: source)
    }

    private func transportError(_ code: CURLcode, _ message: String) -> SourceError {
        let progress = expectedLength.map { " after \(received) of \($0) bytes" } ?? ""
        switch code {
        case CURLE_OPERATION_TIMEDOUT:
            return SourceError(.timeout, source: source, message: "timed out\(progress): \(message)")
        case CURLE_PARTIAL_FILE, CURLE_RECV_ERROR, CURLE_SEND_ERROR, CURLE_GOT_NOTHING:
            return SourceError(.network, source: source, message: "connection broken\(progress): \(message)")
        case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY:
            return SourceError(.network, source: source, message: "cannot connect: \(message)")
        case CURLE_ABORTED_BY_CALLBACK:
            return SourceError(.cancelled, source: source, message: "cancelled")
        case CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL:
            return SourceError(.misconfigured, source: source, message: "bad URL: \(message)")
        case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE:
            return SourceError(.misconfigured, source: source, message: "TLS certificate problem: \(message)")
        default:
            return SourceError(.network, source: source, message: "transfer failed\(progress): \(message) (curl \(code.rawValue))")
        }
    }
}
