import PMI
import Testing

@Suite("choosing the bootstrap from the environment")
struct SelectionTests {
    @Test("each launcher's variables choose its protocol")
    func choices() throws {
        #expect(try BootstrapSelection.choose(from: [:]) == .singleton)
        #expect(try BootstrapSelection.choose(from: ["PMI_FD": "5", "PMI_RANK": "2", "PMI_SIZE": "4", "PMI_JOBID": "7.0"])
            == .pmi2(descriptor: 5, rank: 2, jobID: "7.0"))
        #expect(try BootstrapSelection.choose(from: ["PMI_FD": "5", "PMI_RANK": "2", "PMI_SIZE": "4", "FABRIC_PMI_VERSION": "1"])
            == .pmi1(descriptor: 5, rank: 2, size: 4))
        #expect(try BootstrapSelection.choose(from: ["PMI_PORT": "node1:4567", "PMI_ID": "3"])
            == .pmi1Port(host: "node1", port: 4567, identifier: "3"))
        #expect(try BootstrapSelection.choose(from: ["PMI_PORT": "[::1]:4567", "PMI_ID": "0"])
            == .pmi1Port(host: "::1", port: 4567, identifier: "0"))
        #expect(try BootstrapSelection.choose(from: ["PMIX_NAMESPACE": "slurm.pmix.12.0", "PMIX_RANK": "1", "PMI_FD": "4"])
            == .pmix(namespace: "slurm.pmix.12.0", rank: 1))
        #expect(try BootstrapSelection.choose(from: ["SLURM_NTASKS": "1"]) == .singleton)
    }

    @Test("a job of several tasks without a usable bootstrap refuses to run as singletons", arguments: [
        "PMI_SIZE", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE",
    ])
    func refusesSingletons(variable: String) {
        #expect {
            try BootstrapSelection.choose(from: [variable: "4"])
        } throws: { error in
            guard let error = error as? PMIError else { return false }
            return error.kind == .badEnvironment && error.message.contains("\(variable)=4") && error.message.contains("separate singletons")
        }
    }

    @Test("bad launcher variables are named", arguments: [
        (["PMI_FD": "x", "PMI_RANK": "0"], "PMI_FD='x'"),
        (["PMI_FD": "3"], "PMI_RANK is not set"),
        (["PMI_FD": "3", "PMI_RANK": "-1"], "PMI_RANK='-1'"),
        (["PMI_FD": "3", "PMI_RANK": "4", "PMI_SIZE": "4", "FABRIC_PMI_VERSION": "1"], "not below PMI_SIZE=4"),
        (["PMI_FD": "3", "PMI_RANK": "0", "FABRIC_PMI_VERSION": "3"], "FABRIC_PMI_VERSION='3'"),
        (["PMI_PORT": "nohostport", "PMI_ID": "0"], "PMI_PORT='nohostport'"),
        (["PMI_PORT": "h:0", "PMI_ID": "0"], "PMI_PORT='h:0'"),
        (["PMI_PORT": "h:99"], "PMI_ID is not"),
        (["PMIX_NAMESPACE": "ns"], "PMIX_RANK is not set"),
    ])
    func badVariables(environment: [String: String], naming: String) {
        #expect {
            try BootstrapSelection.choose(from: environment)
        } throws: { error in
            (error as? PMIError)?.kind == .badEnvironment && (error as? PMIError)?.message.contains(naming) == true
        }
    }

    @Test("a singleton keeps its own key-value space")
    func singleton() throws {
        let client = try BootstrapSelection.connect(.singleton)
        #expect(client.rank == 0 && client.size == 1)
        try client.put(key: "a", value: "1")
        try client.fence()
        #expect(try client.get(key: "a") == "1")
        #expect(throws: PMIError.self) { try client.get(key: "b") }
    }
}
