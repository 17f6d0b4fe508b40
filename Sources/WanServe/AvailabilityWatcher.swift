import Foundation
import WanCore

/// Publishes `model_availability_change` whenever a model's `availability_status` changes,
/// whoever changed it: this sidecar's downloads, `wan models ensure`, the mount, GC. It polls
/// the cache once a second (state changes of other processes reach it only through disk).
struct AvailabilityWatcher: Sendable {
    let catalog: ModelCatalog
    var interval: Duration = .seconds(1)

    /// Runs until the task is cancelled.
    func run() async {
        var last: [String: String] = [:]
        while !Task.isCancelled {
            let now = (try? await catalog.offload { [catalog] in try catalog.specs().map { (DownloadManager.key($0), catalog.availability($0)) } }) ?? []
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
