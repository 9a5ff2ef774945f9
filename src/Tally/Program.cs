using Tally;
using Tally.Ledger.Stores;

try
{
    return await TallyCommandLine.Build().Parse(args).InvokeAsync(new System.CommandLine.InvocationConfiguration { EnableDefaultExceptionHandler = false });
}
catch (Exception exception) when (StoreRefusal(exception) is { } refusal)
{
    // A store that cannot open (its folder held by another process, files that do not belong together, a database
    // out of reach) is the operator's to fix: the message says how, and a stack trace would only bury it.
    Console.Error.WriteLine(refusal.Message);
    return ExitCodes.Failure;
}
catch (ArgumentException exception)
{
    // Configuration mistakes (an unknown --store, postgres without a connection) are usage errors, not crashes.
    Console.Error.WriteLine(exception.Message);
    return ExitCodes.UsageError;
}

/// <summary>The store's refusal to open, also when the host wrapped it while starting its services.</summary>
static StoreOpenException? StoreRefusal(Exception exception) => exception switch
{
    StoreOpenException refusal => refusal,
    AggregateException aggregate => aggregate.InnerExceptions.Select(StoreRefusal).FirstOrDefault(refusal => refusal is not null),
    _ => null,
};
