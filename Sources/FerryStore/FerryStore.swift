/// Namespace for the FerryStore module.
public enum FerryStoreModule {
    /// The module's name, used in log labels.
    public static let name = "FerryStore"
}
