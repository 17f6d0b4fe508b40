import Foundation
import WanCache
import WanCore

/// Publishes `model_availability_change` whenever a model's `availability_status` changes,
/// whoever changed it: this sidecar's downloads, `wan models ensure`, the mount, GC. It polls
/// the cache once a second (state changes of other processes reach it only through disk), and
/// posts what it read on the status board the probe answers from. It reads on a thread of its
/// own, so the board stays current however many requests wait for the blocking pool, and
/// measures the cache's disk usage every ten seconds for `/metrics`.
struct AvailabilityWatcher: Sendable {
    let catalog: ModelCatalog
    var interval: Duration = .seconds(1)

    /// Runs until the task is cancelled.
    func run() async {
        var last: [String: String] = [:]
        while !Task.isCancelled {
            let now = (try? await catalog.boardThread.runIfActive { [catalog] () -> [(String, String)] in
                let specs = try catalog.specs()
                let statuses = specs.map { (spec: $0, status: try? catalog.engine.status($0)) }
                let databaseReadable = (try? catalog.engine.state(create: true)) != nil
                catalog.board.publish(.init(taken: .now, takenAt: Date(), models: statuses, databaseReadable: databaseReadable))
                if catalog.board.usageIsDue, let usage = try? DiskUsage.measure(catalog.engine.resolver) { catalog.board.publish(usage) }
                return statuses.map { entry in
                    (DownloadManager.key(entry.spec), entry.status.map { catalog.availability(entry.spec, status: $0) } ?? "unknown")
                }
            }) ?? []
            for (key, status) in now {
                if let old = last[key], old != status {
                    catalog.downloads.events.publish(Event.AvailabilityChange(modelID: key, oldStatus: old, newStatus: status, timestamp: Date()))
                }
                last[key] = status
            }
            try? await Task.sleep(for: interval)
        }
    }
}
