/// CPU priority of the calling thread.
public enum ThreadPriority {
    /// Makes the calling thread yield to others when the CPU is contended (`nice` +`value`:
    /// Linux keeps a nice value per thread). Lowering it again needs privileges, so use it
    /// on threads that keep the lower priority for their whole life.
    public static func lowerCurrent(to value: Int32) throws(SystemError) {
        try Sys.setThreadNice(value)
    }
}
