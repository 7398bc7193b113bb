"""Score networks. Importing this package registers every architecture in `utils.MODELS`."""
from models import ncsnpp, ddpm  # registers
