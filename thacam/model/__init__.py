"""THA3's networks and the poser that chains them (torch only; no cv2 or mediapipe here)."""

from .checkpoint import load_official, load_state_dict_file
from .networks import NETWORK_CONFIGS, build_network
from .poser import NETWORK_NAMES, Poser

__all__ = ["Poser", "NETWORK_NAMES", "NETWORK_CONFIGS", "build_network", "load_official",
           "load_state_dict_file"]
