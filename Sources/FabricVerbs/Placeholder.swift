import FabricCore
