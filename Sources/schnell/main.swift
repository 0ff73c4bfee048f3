import Schnell
print("schnell")
