import Foundation
import WanCore

/// How far a repair may go.
public enum RepairMode: String, Sendable, Codable {
    /// Re-hash, quarantine what is damaged, re-link verified blobs the model lost: no network.
    case local
    /// The same, then fetch what is still missing (in this call) and re-hash the result.
    case fetch
}

/// What a repair found and did. `actions` names the steps taken, in order: `integrity_check`,
/// `quarantine`, `relink`, and with ``RepairMode/fetch`` `partial_redownload` or
/// `full_redownload`.
public struct RepairReport: Sendable, Equatable, Codable {
    public var actions: [String] = []
    /// The re-hash before anything changed.
    public var found = VerificationResult()
    /// The re-hash after the fetch (``RepairMode/fetch``); nil when nothing was fetched.
    public var after: VerificationResult?
    /// Files still missing when the repair ended (what a download must fetch).
    public var stillMissing: [String] = []
    /// Bytes already present of the model when the repair ended, before any fetch.
    public var bytesPresent: Int64 = 0

    /// Whether the model is intact now (nothing missing, and the last re-hash found nothing bad).
    public var intact: Bool { stillMissing.isEmpty && (after ?? found).failedFiles.isEmpty }

    enum CodingKeys: String, CodingKey {
        case actions, found, after, stillMissing = "still_missing", bytesPresent = "bytes_present"
    }
}

extension CacheEngine {
    /// Repairs a model the one way the CLI (`verify --fix`) and the sidecar (`repair`, the
    /// scheduled health pass) both use: re-hash every file; move damaged content to the
    /// quarantine (every link to it goes); re-link files whose verified blob is still there;
    /// with ``RepairMode/fetch``, fetch what is still missing and re-hash. Blobs are immutable
    /// and links are replaced atomically, so a file open through a mount is never broken.
    public func repair(_ spec: ModelSpec, mode: RepairMode) throws -> RepairReport {
        var report = RepairReport()
        report.actions.append("integrity_check")
        report.found = try verify(spec)
        if !report.found.failedFiles.isEmpty {
            try quarantine(spec, files: report.found.failedFiles)
            report.actions.append("quarantine")
        }
        var relinked = false
        for file in spec.files where report.found.missingFiles.contains(file.path) && blobExists(file) {
            try link(file, into: modelKey(spec), at: file.path)
            relinked = true
        }
        if relinked { report.actions.append("relink") }
        let now = try status(spec)
        report.stillMissing = now.missingFiles
        report.bytesPresent = now.bytesPresent
        guard mode == .fetch, now.state != .complete else { return report }
        report.actions.append(now.bytesPresent == 0 ? "full_redownload" : "partial_redownload")
        _ = try ensure(spec)
        report.after = try verify(spec)
        report.stillMissing = report.after?.missingFiles ?? []
        return report
    }
}
