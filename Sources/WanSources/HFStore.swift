import Foundation
import Synchronization
import WanCore

/// `hf://org/repo` or `hf://org/repo@revision` on the Hugging Face Hub or a mirror
/// (`HF_ENDPOINT`).
///
/// Files are fetched from `{endpoint}/{org}/{repo}/resolve/{revision}/{path}` with
/// `Authorization: Bearer $HF_TOKEN`. Large (LFS) files answer with a redirect to a CDN
/// host; the token is never sent there, and the CDN location is remembered for a few
/// minutes so each range after the first goes straight to the CDN.
public struct HFStore: StorageBackend {
    public let source: SourceURL
    public let repo: String
    public let revision: String
    public let endpoint: String
    public let client: HTTPClient
    private let token: String?
    private let locations = LocationCache()
    /// Entries per tree page to ask for (`limit=`); nil leaves it to the server.
    public var listPageSize: Int?

    public var displayName: String { "\(endpoint)/\(repo)@\(revision)" }
    public var usesCredentials: Bool { token != nil }

    public init(source: SourceURL, endpoint: String, token: String?, client: HTTPClient) throws(SourceError) {
        guard case .huggingFace(let repo, let revision) = source.location else {
            throw SourceError(.misconfigured, source: source.raw, message: "not an hf:// source")
        }
        self.source = source
        self.repo = repo
        self.revision = revision ?? "main"
        var endpoint = endpoint
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        self.endpoint = endpoint
        self.token = token
        self.client = client
    }

    public var connectionURL: String? { endpoint }

    private var authHeaders: [(name: String, value: String)] { token.map { [("Authorization", "Bearer \($0)")] } ?? [] }

    func resolveURL(_ path: String) -> String {
        "\(endpoint)/\(repo)/resolve/\(PercentEncoding.encode(revision))/\(PercentEncoding.encodePath(path))"
    }

    // MARK: - StorageBackend

    public func stat(_ path: String, cancel: CancellationToken) throws(SourceError) -> RemoteFile {
        var url = resolveURL(path)
        for _ in 0..<5 {
            let response = try client.send(HTTPRequest(.head, url: url, headers: authHeaders), followRedirects: false, cancel: cancel) {
                (200..<400).contains($0.status) ? nil : classify($0, path: path)
            }
            let commit = response.header("x-repo-commit")
            if (300..<400).contains(response.status) {
                guard let location = response.header("location") else {
                    throw SourceError(.protocolViolation, source: displayName, message: "redirect for \(path) without Location", status: response.status)
                }
                let next = try HTTPClient.followable(location, from: url)
                // A same-host redirect without LFS headers (renamed repo, moved revision): follow it.
                if response.header("x-linked-size") == nil && HTTPClient.authority(of: next) == HTTPClient.authority(of: url) {
                    url = next
                    continue
                }
                guard let text = response.header("x-linked-size"), let size = Int64(strictDecimal: text) else {
                    throw SourceError(.protocolViolation, source: displayName,
                                      message: "redirect for \(path) without a usable X-Linked-Size (\(response.header("x-linked-size")?.prefix(40) ?? "none"))",
                                      status: response.status)
                }
                locations.store(path, url: next)
                let linkedEtag = response.header("x-linked-etag").map(HFStore.unquote)
                return RemoteFile(path: path, size: size, etag: linkedEtag,
                                  sha256: linkedEtag.flatMap { Hex.isSHA256($0) ? $0.lowercased() : nil }, revision: commit)
            }
            guard let size = response.header("content-length").flatMap({ Int64(strictDecimal: $0) }) else {
                throw SourceError(.protocolViolation, source: displayName, message: "HEAD \(path) gave no usable Content-Length", status: response.status)
            }
            locations.store(path, url: nil)
            return RemoteFile(path: path, size: size, etag: response.header("etag").map(HFStore.unquote), revision: commit)
        }
        throw SourceError(.protocolViolation, source: displayName, message: "too many redirects for \(path)")
    }

    public func read(_ path: String, range: Range<Int64>, fileSize: Int64?, into sink: any ByteSink,
                     cancel: CancellationToken) throws(SourceError) {
        if locations.lookup(path) == nil { _ = try stat(path, cancel: cancel) }
        guard case .some(let cdn) = locations.lookup(path) else {
            throw SourceError(.protocolViolation, source: displayName, message: "lost the location of \(path)")
        }
        if let cdn {
            // Straight to the CDN, without the token. A signed URL that expired is resolved once more.
            var request = HTTPRequest(.get, url: cdn)
            request.fileSize = fileSize
            do {
                try client.read(request, range: range, into: sink, cancel: cancel) { classify($0, path: path) }
                return
            } catch where [SourceError.Kind.forbidden, .unauthorized, .notFound].contains(error.kind) {
                locations.forget(path)
                _ = try stat(path, cancel: cancel)
                guard case .some(.some(let fresh)) = locations.lookup(path) else { throw error }
                request.url = fresh
                try client.read(request, range: range, into: sink, cancel: cancel) { classify($0, path: path) }
                return
            }
        }
        var request = HTTPRequest(.get, url: resolveURL(path), headers: authHeaders)
        request.fileSize = fileSize
        try client.read(request, range: range, into: sink, cancel: cancel) { classify($0, path: path) }
    }

    /// The repository's files from `/api/models/{repo}/tree/{revision}?recursive=true`, with
    /// LFS sha256 where the Hub has it, following `Link: <...>; rel="next"` pages.
    public func list(prefix: String, cancel: CancellationToken) throws(SourceError) -> [RemoteFile] {
        var url: String? = "\(endpoint)/api/models/\(repo)/tree/\(PercentEncoding.encode(revision))"
            + (prefix.isEmpty ? "" : "/" + PercentEncoding.encodePath(prefix)) + "?recursive=true"
            + (listPageSize.map { "&limit=\($0)" } ?? "")
        var files: [RemoteFile] = []
        var pages = 0
        while let next = url, pages < 10_000 {
            pages += 1
            let sink = DataSink()
            // The token goes to the endpoint's own host only, never to a host a Link header names.
            let sameHost = HTTPClient.authority(of: next) == HTTPClient.authority(of: endpoint)
            let response = try client.send(HTTPRequest(.get, url: next, headers: sameHost ? authHeaders : []), into: sink, cancel: cancel) {
                classify($0, path: prefix.isEmpty ? "(tree)" : prefix)
            }
            guard let entries = try? JSONDecoder().decode([TreeEntry].self, from: Data(sink.bytes)) else {
                throw SourceError(.protocolViolation, source: displayName, message: "the tree listing is not the Hub's JSON")
            }
            for entry in entries where entry.type == "file" {
                let size = entry.lfs?.size ?? entry.size ?? 0
                guard size >= 0 else {
                    throw SourceError(.protocolViolation, source: displayName, message: "the tree listing gives \(entry.path.prefix(200)) a negative size (\(size))")
                }
                files.append(RemoteFile(path: entry.path, size: size, etag: entry.oid,
                                        sha256: entry.lfs?.oid, revision: response.header("x-repo-commit")))
            }
            url = try HFStore.nextLink(response.header("link")).map { link throws(SourceError) in try HTTPClient.followable(link, from: next) }
        }
        return files.sorted { $0.path < $1.path }
    }

    // MARK: - Helpers

    struct TreeEntry: Decodable {
        struct LFS: Decodable {
            let oid: String
            let size: Int64
        }
        let type: String
        let path: String
        let size: Int64?
        let oid: String?
        let lfs: LFS?
    }

    /// The `rel="next"` target of a Link header.
    static func nextLink(_ header: String?) -> String? {
        guard let header else { return nil }
        for part in header.split(separator: ",") {
            let pieces = part.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard let target = pieces.first, target.hasPrefix("<"), target.hasSuffix(">"),
                  pieces.dropFirst().contains(where: { $0.replacingOccurrences(of: " ", with: "") == "rel=\"next\"" }) else { continue }
            return String(target.dropFirst().dropLast())
        }
        return nil
    }

    static func unquote(_ etag: String) -> String {
        var text = etag.hasPrefix("W/") ? String(etag.dropFirst(2)) : etag
        if text.hasPrefix("\""), text.hasSuffix("\""), text.count >= 2 { text = String(text.dropFirst().dropLast()) }
        return text
    }

    /// The Hub's errors (status plus `X-Error-Code`) as messages that say what to do.
    func classify(_ response: HTTPResponse, path: String) -> SourceError? {
        if (200..<300).contains(response.status) { return nil }
        let code = response.header("x-error-code")
        let status = response.status
        switch (status, code) {
        case (_, "GatedRepo"?):
            let message = token == nil
                ? "\(repo) is a gated repository: accept its terms on the Hub, then set HF_TOKEN"
                : "HF_TOKEN has no access to the gated repository \(repo): accept its terms on the Hub with that account"
            return SourceError(status == 401 ? .unauthorized : .forbidden, source: displayName, message: message, status: status)
        case (_, "RepoNotFound"?):
            let hint = token == nil ? " (if it is private, set HF_TOKEN)" : ""
            return SourceError(.notFound, source: displayName, message: "repository \(repo) not found\(hint)", status: status)
        case (_, "RevisionNotFound"?):
            return SourceError(.notFound, source: displayName, message: "revision '\(revision)' not found in \(repo)", status: status)
        case (_, "EntryNotFound"?):
            return SourceError(.notFound, source: displayName, message: "\(path) not found in \(repo) at revision '\(revision)'", status: status)
        case (401, _):
            let message = token == nil ? "authentication required for \(repo): set HF_TOKEN" : "HF_TOKEN was rejected by \(endpoint)"
            return SourceError(.unauthorized, source: displayName, message: message, status: 401)
        case (403, _):
            return SourceError(.forbidden, source: displayName, message: "access to \(repo) is forbidden for this token", status: 403)
        default:
            return HTTPClient.standardClassification(source: displayName, path: path, response)
        }
    }
}

/// Where each file's bytes are served from: a CDN URL (signed, so kept briefly), or nil for
/// "straight from the resolve URL".
final class LocationCache: Sendable {
    private struct Entry {
        let url: String?
        let expires: Date
    }
    private let entries = Mutex<[String: Entry]>([:])
    private let lifetime: Double = 300

    /// `.none`: unknown; `.some(nil)`: the resolve URL; `.some(url)`: the CDN.
    func lookup(_ path: String) -> String?? {
        entries.withLock { table -> String?? in
            guard let entry = table[path], entry.expires > Date() else { return .none }
            return .some(entry.url)
        }
    }

    func store(_ path: String, url: String?) {
        entries.withLock { $0[path] = Entry(url: url, expires: Date().addingTimeInterval(lifetime)) }
    }

    func forget(_ path: String) { _ = entries.withLock { $0.removeValue(forKey: path) } }
}
