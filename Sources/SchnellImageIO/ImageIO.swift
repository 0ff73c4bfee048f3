public enum ImageIO {}
