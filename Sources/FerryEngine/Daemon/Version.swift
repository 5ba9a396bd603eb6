/// ferry's version, printed by `ferry version` and sent in the User-Agent.
public enum FerryVersion {
    /// The release version; packaging/debian/changelog carries the same number.
    public static let string = "0.1.0"
}
