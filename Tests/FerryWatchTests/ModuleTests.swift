import Testing
@testable import FerryWatch

@Test func moduleIsNamed() {
    #expect(FerryWatchModule.name == "FerryWatch")
}
