/// Namespace for the FerryWatch module.
public enum FerryWatchModule {
    /// The module's name, used in log labels.
    public static let name = "FerryWatch"
}
