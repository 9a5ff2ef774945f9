namespace Tally.Ledger; public static class Placeholder {}
