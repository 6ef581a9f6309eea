import MPILauncher
print(LaunchCommandLine.usage)
