/// Whether a host name from a host list is this host (its ranks start
/// here, without a remote shell).
public enum LocalHost {
    public static func matches(_ host: String, hostName: String) -> Bool {
        host == "localhost" || host == "127.0.0.1" || host == "::1" || host == hostName
            || host.split(separator: ".").first.map(String.init) == hostName.split(separator: ".").first.map(String.init)
    }
}
