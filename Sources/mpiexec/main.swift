// mpiexec: the same program as mpirun, under the name MPICH users type.
import Glibc
import MPILauncher

exit(LauncherMain.run(arguments: Array(CommandLine.arguments.dropFirst())))
