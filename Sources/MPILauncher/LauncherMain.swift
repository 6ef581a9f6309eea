import FabricCore
import Glibc

/// The whole of mpirun and mpiexec (one program under two names): reads
/// the command line and the environment, runs the job, returns the exit
/// status.
public enum LauncherMain {
    public static func run(arguments: [String]) -> Int32 {
        let environment = ProcessEnvironment.variables()
        // On another host, started by mpirun through the remote shell.
        if arguments == ["--proxy"] { return ProxyMain.run(environment: environment) }
        do throws(LaunchError) {
            switch try LaunchCommandLine.parse(arguments, environment: environment, readFile: readFile) {
            case .help:
                print(LaunchCommandLine.usage)
                return 0
            case .version:
                print("mpirun (SwiftFabric) 0.1")
                return 0
            case .run(let request):
                let hostName = localHostName()
                let plan = try JobPlan.make(request, localHostName: hostName)
                let addresses = LocalHost.addresses()
                let local = Set(plan.hosts.indices.filter { LocalHost.matches(plan.hosts[$0], hostName: hostName, addresses: addresses) })
                return JobRunner(request: request, plan: plan, localHosts: local, environment: environment, log: standardError).run()
            }
        } catch {
            standardError("mpirun: \(error.message)")
            return 1
        }
    }

    static func standardError(_ text: String) {
        let bytes = Array((text + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }

    static func readFile(_ path: String) throws(LaunchError) -> String {
        guard let file = fopen(path, "r") else { throw LaunchError("cannot read host file \(path): \(String(cString: strerror(errno)))") }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while case let count = fread(&chunk, 1, chunk.count, file), count > 0 { bytes += chunk[..<count] }
        return String(decoding: bytes, as: UTF8.self)
    }


    static func localHostName() -> String {
        var name = [UInt8](repeating: 0, count: 256)
        gethostname(&name, name.count)
        return String(decoding: name.prefix(while: { $0 != 0 }), as: UTF8.self)
    }
}
