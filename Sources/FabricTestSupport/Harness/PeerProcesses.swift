
/// Where the executables the tests start are (the tests start them with
/// swift-subprocess).
public enum PeerProcesses {
    /// The path of `name`, an executable of this package, built beside the
    /// test bundle (a test target that starts it depends on it).
    public static func executable(named name: String) -> String {
        let bundle = CommandLine.arguments[0]
        guard let slash = bundle.lastIndex(of: "/") else { return name }
        return String(bundle[...slash]) + name
    }
}
