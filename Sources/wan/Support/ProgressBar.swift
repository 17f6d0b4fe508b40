import Foundation
import Glibc
import Synchronization
import WanCore

/// A one-line progress bar on stderr, drawn only when stderr is a terminal (so logs and
/// `--json` pipes stay clean). Thread-safe; redraws at most ten times a second.
final class ProgressBar: Sendable {
    private let label: String
    private let enabled: Bool
    /// When the bar was last drawn.
    private let lastDraw = Mutex(Date.distantPast)
    private let started = Date()

    init(label: String, enabled: Bool = isatty(STDERR_FILENO) == 1) {
        self.label = label
        self.enabled = enabled
    }

    func update(_ done: Int64, of total: Int64) {
        guard enabled else { return }
        let now = Date()
        let due = lastDraw.withLock { last in
            guard now.timeIntervalSince(last) >= 0.1 || done >= total else { return false }
            last = now
            return true
        }
        guard due else { return }
        let fraction = total > 0 ? Double(done) / Double(total) : 1
        let width = 30
        let filled = Int(fraction * Double(width))
        let rate = Double(done) / max(0.001, now.timeIntervalSince(started))
        let bar = String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled)
        let line = "\r\(label) [\(bar)] \(Int(fraction * 100))% \(ByteSize.format(done))/\(ByteSize.format(total)) \(ByteSize.format(Int64(rate)))/s "
        FileHandle.standardError.write(Data(line.utf8))
    }

    func finish() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\n".utf8))
    }
}
