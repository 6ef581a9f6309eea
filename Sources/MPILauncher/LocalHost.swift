import FabricSupport
import Glibc

/// Whether a host name from a host list is this host (its ranks start
/// here, without a remote shell): `localhost`, a loopback address, this
/// machine's name (with or without its domain), or one of its interfaces'
/// addresses (in a network namespace, that namespace's).
public enum LocalHost {
    public static func matches(_ host: String, hostName: String, addresses: Set<String> = []) -> Bool {
        host == "localhost" || host == "127.0.0.1" || host == "::1" || host == hostName || addresses.contains(host)
            || host.split(separator: ".").first.map(String.init) == hostName.split(separator: ".").first.map(String.init)
                && !host.allSatisfy({ $0.isNumber || $0 == "." })
    }

    /// This host's interface addresses.
    public static func addresses() -> Set<String> {
        Set(InterfaceAddresses.list(families: [AF_INET, AF_INET6]))
    }
}
