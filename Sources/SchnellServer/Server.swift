import Schnell
