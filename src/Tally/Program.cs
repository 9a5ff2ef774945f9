using Microsoft.AspNetCore.Connections;
using Tally;
using Tally.Ledger.Stores;

try
{
    var parse = TallyCommandLine.Build().Parse(args);
    if (parse.Errors.Count > 0)
    {
        // A mistyped command line is a usage error (exit code 2, as a setting that is not valid), said in a line or
        // two on standard error, rather than the whole help on standard output.
        foreach (var error in parse.Errors) Console.Error.WriteLine(error.Message);
        Console.Error.WriteLine("See tally --help, or tally <command> --help.");
        return ExitCodes.UsageError;
    }
    return await parse.InvokeAsync(new System.CommandLine.InvocationConfiguration { EnableDefaultExceptionHandler = false });
}
catch (Exception exception) when (StartRefusal(exception) is { } refusal)
{
    // A store that cannot open (its folder held by another process, files that do not belong together, a database
    // out of reach), or an address another process listens on, is the operator's to fix: the message says what
    // it is, and a stack trace would only bury it.
    Console.Error.WriteLine(refusal.Message);
    return ExitCodes.Failure;
}
catch (ArgumentException exception)
{
    // Configuration mistakes (an unknown --store, postgres without a connection) are usage errors, not crashes.
    Console.Error.WriteLine(exception.Message);
    return ExitCodes.UsageError;
}

/// <summary>Why the command could not start, when it is the store's refusal to open or an address in use, also when the host wrapped it.</summary>
static Exception? StartRefusal(Exception exception) => exception switch
{
    StoreOpenException refusal => refusal,
    // Kestrel's own message names the address: "Failed to bind to address http://…: address already in use."
    IOException { InnerException: AddressInUseException } bind => bind,
    AggregateException aggregate => aggregate.InnerExceptions.Select(StartRefusal).FirstOrDefault(refusal => refusal is not null),
    _ => null,
};
