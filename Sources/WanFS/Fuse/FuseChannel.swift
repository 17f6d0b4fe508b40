import CFuse
import Foundation
import Glibc

/// How the daemon talks to /dev/fuse (libfuse's custom I/O): plain `read`, `writev` and
/// `splice`, plus what a change of daemon needs:
///
/// - the kernel's FUSE_INIT request is kept, so a daemon that takes this connection over can
///   feed the same INIT to its own libfuse session (which serves nothing before INIT); its
///   reply to that INIT is swallowed, since the kernel already has one;
/// - the workers can be *parked*: every thread that would read the next request stops before
///   reading it, a thread blocked in `read` is woken by a signal without losing anything (a
///   read that was interrupted took no request), and once no request is being served the
///   connection can change hands with nothing lost; parked workers can be resumed (the
///   takeover failed) or let go (the loop ends without unmounting).
///
/// All the raw calls on the FUSE device are in this file.
final class FuseChannel: @unchecked Sendable {
    // @unchecked: every field is guarded by `condition`.

    /// What a daemon taking over this connection needs to know about it.
    struct Record: Codable, Sendable {
        /// The kernel's FUSE_INIT request, as read from the device.
        var initRequest: [UInt8]
        /// The capabilities the first daemon agreed to (`fuse_conn_info.want`).
        var want: UInt32
        var maxRead: Int
        var passthrough: Bool
        var directIOMmap: Bool

        /// Whether it can be a connection's (it came from another process, or a file).
        var isPlausible: Bool {
            FuseChannel.isInit(initRequest) && initRequest.count <= 4096 && (4096...(128 << 20)).contains(maxRead)
        }
    }

    static let opcodeInit: UInt32 = 26
    /// FUSE_NOTIFY_RESEND (Linux >= 6.9): the kernel sends again every request it had sent
    /// and not yet seen answered. Not in Debian 12's linux/fuse.h.
    static let notifyResend: Int32 = 7
    /// The signal that wakes a worker blocked in `read` so that it parks.
    static let wakeSignal = SIGUSR2

    private let condition = NSCondition()
    private var reading = Set<pthread_t>()
    /// Threads serving a request they read, with their kernel ids (libfuse ends a worker
    /// that finds too many idle, and such a thread never comes back to read).
    private var serving: [pthread_t: pid_t] = [:]
    private var parking = false
    private var letGo = false
    private var initRequest: [UInt8]?
    private var replay: [UInt8]?
    private var swallowUnique: UInt64?
    /// A replayed INIT was answered without error by libfuse (nil: none replayed).
    private var replayAccepted: Bool?

    /// A channel for a connection this daemon mounted itself.
    init() { Self.installWakeHandler() }

    /// A channel for a connection taken over: `initRequest` is read first, and the reply to it
    /// goes nowhere.
    init(replaying initRequest: [UInt8]) {
        Self.installWakeHandler()
        self.initRequest = initRequest
        replay = initRequest
        swallowUnique = Self.unique(initRequest)
    }

    /// Whether libfuse accepted the replayed INIT (its swallowed reply had no error); true for
    /// a connection this daemon mounted.
    var initAccepted: Bool { condition.withLock { replayAccepted ?? true } }

    /// The kernel's INIT request, once it was read (or the one replayed).
    var recordedInit: [UInt8]? { condition.withLock { initRequest } }

    /// Lets the wake signal reach the calling thread and the threads it starts (the loop's
    /// workers): a daemon inherits its launcher's signal mask, which may block it.
    static func unblockWakeSignal() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, wakeSignal)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    private static func installWakeHandler() {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }   // only interrupts: no SA_RESTART
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(wakeSignal, &action, nil)
    }

    static func unique(_ header: [UInt8]) -> UInt64? {
        guard header.count >= 16 else { return nil }
        return header[8..<16].reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    static func isInit(_ request: [UInt8]) -> Bool {
        guard request.count >= 40 else { return false }
        let length = request[0..<4].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        let opcode = request[4..<8].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        return opcode == opcodeInit && Int(length) == request.count
    }

    // MARK: - libfuse's custom I/O

    /// The next request, or -1 with errno EINTR when parked and resumed or let go.
    func read(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ length: Int) -> Int {
        // libfuse ends its loop by cancelling the workers (pthread_cancel). A worker cancelled
        // while it waits on `condition` would die holding its mutex and hang the others: only
        // read(2), where no lock is held, may be a cancellation point here.
        var cancellable: Int32 = 0
        pthread_setcancelstate(Int32(PTHREAD_CANCEL_DISABLE), &cancellable)
        defer { pthread_setcancelstate(cancellable, nil) }
        let me = pthread_self()
        condition.lock()
        serving[me] = nil   // the request this thread read before is answered
        if let replay {
            self.replay = nil
            condition.unlock()
            guard let buffer, replay.count <= length else { errno = EINVAL; return -1 }
            replay.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            condition.withLock { serving[me] = wan_gettid() }
            return replay.count
        }
        // libfuse answers EIO to anything read before INIT is done, and starts a second worker
        // before the first has processed the replayed INIT: wait for its answer.
        while swallowUnique != nil && !letGo { condition.wait() }
        while true {
            if parking || letGo {
                condition.broadcast()
                while parking && !letGo { condition.wait() }
                condition.unlock()
                errno = EINTR
                return -1
            }
            reading.insert(me)
            condition.unlock()
            pthread_setcancelstate(cancellable, nil)
            let count = Glibc.read(fd, buffer, length)
            let code = errno
            pthread_setcancelstate(Int32(PTHREAD_CANCEL_DISABLE), nil)
            condition.lock()
            reading.remove(me)
            if count > 0 {
                serving[me] = wan_gettid()
                if initRequest == nil, let buffer {
                    let bytes = Array(UnsafeRawBufferPointer(start: buffer, count: count))
                    if Self.isInit(bytes) { initRequest = bytes }
                }
                condition.broadcast()
                condition.unlock()
                return count
            }
            if count < 0 && code == EINTR { continue }   // parks above if asked to
            condition.broadcast()
            condition.unlock()
            errno = code
            return count
        }
    }

    func splice(_ input: Int32, _ inputOffset: UnsafeMutablePointer<off_t>?, _ output: Int32,
                _ outputOffset: UnsafeMutablePointer<off_t>?, _ length: Int, _ flags: UInt32) -> Int {
        wan_splice(input, inputOffset, output, outputOffset, length, flags)
    }

    func writev(_ fd: Int32, _ vectors: UnsafeMutablePointer<iovec>?, _ count: Int32) -> Int {
        if let vectors, count > 0, let expected = condition.withLock({ swallowUnique }),
           vectors[0].iov_len >= 16, let base = vectors[0].iov_base {
            let unique = base.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian
            if unique == expected {
                let error = base.loadUnaligned(fromByteOffset: 4, as: Int32.self).littleEndian
                condition.withLock {
                    swallowUnique = nil
                    replayAccepted = error == 0
                    condition.broadcast()
                }
                return (0..<Int(count)).reduce(0) { $0 + vectors[$1].iov_len }
            }
        }
        return Glibc.writev(fd, vectors, count)
    }

    // MARK: - Parking

    /// Stops every worker before its next request and waits until none is serving one.
    /// Returns false (still parking: call ``resume()`` or ``letGoOfWorkers()``) when a request
    /// is still being served at the deadline.
    func park(timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        parking = true
        while true {
            serving = serving.filter { Glibc.access("/proc/self/task/\($0.value)", F_OK) == 0 }
            if reading.isEmpty && serving.isEmpty {
                condition.unlock()
                return true
            }
            // A worker blocked in read(2) returns EINTR without taking a request; one woken
            // just before it entered read is woken again on the next round.
            for thread in reading { pthread_kill(thread, Self.wakeSignal) }
            if Date() >= deadline {
                condition.unlock()
                return false
            }
            _ = condition.wait(until: min(deadline, Date().addingTimeInterval(0.002)))
        }
    }

    /// The parked workers read requests again (the connection did not change hands).
    func resume() {
        condition.withLock {
            parking = false
            condition.broadcast()
        }
    }

    /// The parked workers return (the session has been told to exit, so its loop ends and
    /// nothing more is read: the connection now belongs to another daemon).
    func letGoOfWorkers() {
        condition.withLock {
            letGo = true
            condition.broadcast()
            for thread in reading { pthread_kill(thread, Self.wakeSignal) }
        }
    }

    // MARK: - The mount

    /// Detaches the mount at `path` (a daemon that took the mount over has no libfuse mount
    /// of its own to undo): umount2(MNT_DETACH) as root, `fusermount3 -u -z` otherwise.
    static func detachMount(_ path: String) {
        if geteuid() == 0 {
            if umount2(path, Int32(MNT_DETACH)) == 0 { return }
        }
        let helper = Process()
        helper.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        helper.arguments = ["fusermount3", "-u", "-z", path]
        try? helper.run()
        helper.waitUntilExit()
    }

    // MARK: - Notifications

    /// Asks the kernel to send again the requests it sent and never saw answered (a daemon
    /// that died read them). False when the kernel does not know the notification (< 6.9).
    static func resendUnanswered(_ fd: Int32) -> Bool {
        // struct fuse_out_header { uint32_t len; int32_t error; uint64_t unique; }, unique 0: a notification.
        var header = [UInt8](repeating: 0, count: 16)
        header[0] = 16
        withUnsafeBytes(of: notifyResend.littleEndian) { header.replaceSubrange(4..<8, with: $0) }
        return Glibc.write(fd, header, header.count) == header.count
    }
}

