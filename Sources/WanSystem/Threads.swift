/// CPU priority of the calling thread.
public enum ThreadPriority {
    /// Makes the calling thread yield to others when the CPU is contended (`nice` +`value`:
    /// Linux keeps a nice value per thread). Lowering it again needs privileges, so use it
    /// on threads that keep the lower priority for their whole life.
    public static func lowerCurrent(to value: Int32) throws(SystemError) {
        try Sys.setThreadNice(value)
    }
}

/// The calling thread's name as the kernel keeps it (`top -H`, `/proc/PID/task/*/comm`, and
/// what tests single threads out by). Foundation's `Thread.name` is not that on Linux: a new
/// thread starts with its creator's name (a fetch thread started from a Swift concurrency
/// worker was "com.apple.root.default-qos" for the kernel), and a name set from inside the
/// thread was, under load, not what `Thread.current.name` read back.
public enum ThreadName {
    /// Names the calling thread: at most 15 bytes, longer names are cut.
    public static func set(_ name: String) {
        Sys.setThreadName(name)
    }

    /// The calling thread's name ("" when it cannot be read).
    public static var current: String { Sys.threadName() }
}
