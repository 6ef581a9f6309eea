// mpirun: starts an MPI job (docs/launchers.md). mpiexec is the same program.
import Glibc
import MPILauncher

exit(LauncherMain.run(arguments: Array(CommandLine.arguments.dropFirst())))
