"""Score networks. Importing this package registers every architecture in `utils.MODELS`."""
from models import ncsn, ncsnv2  # registers
from models import ncsnpp, ddpm, adm  # registers
