//! How the lab's Exchange cmdlets fail: without the snap-in, with another snap-in, on a
//! version without the cmdlet, on objects that do not exist (worded as Exchange words it),
//! and on the confirmation prompts a non-interactive host cannot show — and that
//! `-ErrorAction`, `$ErrorActionPreference` and `try`/`catch` treat them as PowerShell does.
#![allow(clippy::unwrap_used)]

mod exchange_support;

use exchange_support::{fails, json, lab, run, seed, DC, EX2010, EX2019, SNAPIN};
use serde_json::json as j;

const CMDLETS: [&str; 9] = [
    "Get-Mailbox -Identity 'bob'",
    "Set-Mailbox -Identity 'bob' -ForwardingSmtpAddress $null",
    "Get-CASMailbox -Identity 'bob'",
    "Set-CASMailbox -Identity 'bob' -OWAEnabled $false",
    "Get-MobileDevice -Mailbox 'bob'",
    "Clear-MobileDevice -Identity 'bob\\ExchangeActiveSyncDevices\\iPhone§ApplF17XQ1' -Confirm:$false",
    "Get-InboxRule -Mailbox 'bob'",
    "Disable-InboxRule -Identity 'bob\\Newsletters' -Confirm:$false",
    "Remove-InboxRule -Identity 'bob\\Newsletters' -Confirm:$false",
];

#[tokio::test]
async fn without_the_snapin_the_exchange_cmdlets_are_not_recognized() {
    let host = lab(EX2019);
    seed(&host.mailboxes());
    let before = host.mailboxes().snapshot();
    for cmd in CMDLETS {
        let name = cmd.split(' ').next().unwrap();
        let err = fails(&host, cmd).await;
        assert!(
            err.starts_with(&format!("{name} : The term '{name}' is not recognized as the name of a cmdlet, function, script file, or operable program. Check the spelling of the name, or if a path was included, verify that the path is correct and try again.\r\n")),
            "{err}"
        );
        assert!(
            err.contains(&format!("    + CategoryInfo          : ObjectNotFound: ({name}:String) [{name}], CommandNotFoundException\r\n")),
            "{err}"
        );
    }
    assert_eq!(host.mailboxes().snapshot(), before);
    assert_eq!(host.exchange_counters(), Default::default());
}

#[tokio::test]
async fn add_pssnapin_fails_as_powershell_words_it() {
    let host = lab(EX2019);
    let err = fails(
        &host,
        "Add-PSSnapin Microsoft.Exchange.Management.PowerShell.Nope",
    )
    .await;
    assert_eq!(
        err.lines().next().unwrap(),
        "Add-PSSnapin : The Windows PowerShell snap-in 'Microsoft.Exchange.Management.PowerShell.Nope' is not installed on this computer."
    );
    assert!(err.contains("    + CategoryInfo          : InvalidArgument: (Microsoft.Exchange.Management.PowerShell.Nope:String) [Add-PSSnapin], PSArgumentException\r\n"), "{err}");
    assert!(err.contains("    + FullyQualifiedErrorId : AddPSSnapInRead,Microsoft.PowerShell.Commands.AddPSSnapinCommand\r\n"), "{err}");

    let err = fails(&host, &format!("{SNAPIN}{SNAPIN}")).await;
    assert!(err.starts_with("Add-PSSnapin : Cannot add Windows PowerShell snap-in Microsoft.Exchange.Management.PowerShell.SnapIn because it is already added."), "{err}");

    let err = fails(&host, "Add-PSSnapin Contoso.*").await;
    assert!(err.starts_with("Add-PSSnapin : No Windows PowerShell snap-ins matching the pattern 'Contoso.*' were found."), "{err}");

    // Wildcards, the E2010 name (still registered on 2013 and later), -ErrorAction.
    for load in [
        "Add-PSSnapin Microsoft.Exchange.Management.PowerShell.*",
        "Add-PSSnapin -Name 'microsoft.exchange.management.powershell.e2010'",
        "Add-PSSnapin Microsoft.Exchange.Management.PowerShell.SnapIn -ErrorAction SilentlyContinue\nAdd-PSSnapin Microsoft.Exchange.Management.PowerShell.SnapIn -ErrorAction SilentlyContinue",
    ] {
        let v = json(
            &host,
            &format!("{load}\nConvertTo-Json -InputObject @(Get-Mailbox) -Compress"),
        )
        .await;
        assert_eq!(v, j!([]), "{load}");
    }
}

#[tokio::test]
async fn exchange_2010_has_its_own_snapin_and_no_mobile_device_cmdlets() {
    let host = lab(EX2010);
    seed(&host.mailboxes());
    let err = fails(&host, SNAPIN).await;
    assert!(err.contains("is not installed on this computer."), "{err}");
    let e2010 = "Add-PSSnapin Microsoft.Exchange.Management.PowerShell.E2010\n";
    let v = json(
        &host,
        &format!("{e2010}ConvertTo-Json -InputObject (Get-CASMailbox 'bob').OWAEnabled"),
    )
    .await;
    assert_eq!(v, true);
    for cmd in [
        "Get-MobileDevice -Mailbox 'bob'",
        "Clear-MobileDevice 'x' -Confirm:$false",
    ] {
        let err = fails(&host, &format!("{e2010}{cmd}")).await;
        assert!(
            err.contains("is not recognized as the name of a cmdlet"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn missing_objects_are_worded_as_exchange_words_them() {
    let host = lab(EX2019);
    seed(&host.mailboxes());
    let cases = [
        (
            "Get-Mailbox -Identity 'nobody'",
            format!("The operation couldn't be performed because object 'nobody' couldn't be found on '{DC}'."),
            "Microsoft.Exchange.Management.RecipientTasks.GetMailbox",
        ),
        (
            "Set-Mailbox -Identity 'nobody' -DeliverToMailboxAndForward $false",
            format!("The operation couldn't be performed because object 'nobody' couldn't be found on '{DC}'."),
            "Microsoft.Exchange.Management.RecipientTasks.SetMailbox",
        ),
        (
            "Get-CASMailbox -Identity 'NoBody@lab.example.test'",
            format!("The operation couldn't be performed because object 'NoBody@lab.example.test' couldn't be found on '{DC}'."),
            "Microsoft.Exchange.Management.RecipientTasks.GetCASMailbox",
        ),
        (
            "Set-CASMailbox -Identity 'nobody' -OWAEnabled $false",
            format!("The operation couldn't be performed because object 'nobody' couldn't be found on '{DC}'."),
            "Microsoft.Exchange.Management.RecipientTasks.SetCASMailbox",
        ),
        (
            "Get-MobileDevice -Mailbox 'nobody'",
            format!("The operation couldn't be performed because object 'nobody' couldn't be found on '{DC}'."),
            "Microsoft.Exchange.Management.Tasks.GetMobileDevice",
        ),
        (
            "Clear-MobileDevice -Identity 'bob\\ExchangeActiveSyncDevices\\iPhone§Gone' -Confirm:$false",
            format!("The operation couldn't be performed because object 'bob\\ExchangeActiveSyncDevices\\iPhone§Gone' couldn't be found on '{DC}'."),
            "Microsoft.Exchange.Management.Tasks.ClearMobileDevice",
        ),
        (
            "Get-InboxRule -Mailbox 'nobody'",
            format!("The operation couldn't be performed because object 'nobody' couldn't be found on '{DC}'."),
            "Microsoft.Exchange.Management.StoreTasks.GetInboxRule",
        ),
        (
            "Disable-InboxRule -Identity 'bob\\42' -Confirm:$false",
            "The operation couldn't be performed because 'bob\\42' couldn't be found.".to_owned(),
            "Microsoft.Exchange.Management.StoreTasks.DisableInboxRule",
        ),
        (
            "Remove-InboxRule -Identity 'Gone' -Mailbox 'bob' -Confirm:$false",
            "The operation couldn't be performed because 'Gone' couldn't be found.".to_owned(),
            "Microsoft.Exchange.Management.StoreTasks.RemoveInboxRule",
        ),
    ];
    let before = host.mailboxes().snapshot();
    for (cmd, message, class) in &cases {
        let name = cmd.split(' ').next().unwrap();
        let err = fails(&host, &format!("{SNAPIN}{cmd}")).await;
        let lines: Vec<&str> = err.split("\r\n").collect();
        assert_eq!(lines[0], format!("{name} : {message}"), "{err}");
        assert_eq!(lines[1], "At line:2 char:1", "{err}");
        assert_eq!(
            lines[4],
            format!("    + CategoryInfo          : NotSpecified: (:) [{name}], ManagementObjectNotFoundException"),
            "{err}"
        );
        let fqid = lines[5]
            .strip_prefix("    + FullyQualifiedErrorId : [Server=EX1,RequestId=")
            .unwrap_or_else(|| panic!("{err}"));
        assert!(
            fqid.contains("] [FailureCategory=Cmdlet-ManagementObjectNotFoundException] ")
                && fqid.ends_with(&format!(",{class}")),
            "{err}"
        );

        // -ErrorAction Stop / $ErrorActionPreference = 'Stop': terminating and catchable.
        for stop in [
            format!("try {{ {cmd} -ErrorAction Stop; $m = 'none' }} catch {{ $m = $_.Exception.Message; $r = $_.CategoryInfo.Reason }}"),
            format!("$ErrorActionPreference = 'Stop'\ntry {{ {cmd}; $m = 'none' }} catch {{ $m = $_.Exception.Message; $r = $_.CategoryInfo.Reason }}"),
        ] {
            let v = json(
                &host,
                &format!("{SNAPIN}{stop}\nConvertTo-Json -InputObject ([pscustomobject]@{{ m = $m; r = $r }}) -Compress"),
            )
            .await;
            assert_eq!(v, j!({"m": message, "r": "ManagementObjectNotFoundException"}), "{stop}");
        }
        // -ErrorAction SilentlyContinue: nothing, and the script goes on.
        let out = run(
            &host,
            &format!("{SNAPIN}$x = {cmd} -ErrorAction SilentlyContinue\nConvertTo-Json -InputObject ($null -eq $x) -Compress"),
        )
        .await;
        assert_eq!(
            (out.exit_code, out.stdout.as_str(), out.stderr.as_str()),
            (0, "true\r\n", ""),
            "{cmd}"
        );
    }
    assert_eq!(host.mailboxes().snapshot(), before);
    assert_eq!(host.exchange_counters().changes, 0);
}

#[tokio::test]
async fn an_identity_that_names_two_mailboxes_is_ambiguous() {
    let host = lab(EX2019);
    seed(&host.mailboxes());
    let err = fails(
        &host,
        &format!("{SNAPIN}Set-CASMailbox -Identity '*li*e*' -OWAEnabled $false\nSet-CASMailbox -Identity '*' -OWAEnabled $false"),
    )
    .await;
    assert!(
        err.starts_with("Set-CASMailbox : The operation couldn't be performed because '*' matches multiple entries."),
        "{err}"
    );
    assert!(
        err.contains("NotSpecified: (:) [Set-CASMailbox], ManagementObjectAmbiguousException"),
        "{err}"
    );
    // The first (one match: alice) went through; the second changed nothing.
    assert!(!host.mailboxes().mailbox("alice").unwrap().cas.owa_enabled);
    assert!(host.mailboxes().mailbox("bob").unwrap().cas.owa_enabled);
}

#[tokio::test]
async fn destructive_cmdlets_refuse_to_prompt_without_confirm_false() {
    let host = lab(EX2019);
    let store = host.mailboxes();
    seed(&store);
    let before = store.snapshot();
    for cmd in [
        "Clear-MobileDevice -Identity 'bob\\ExchangeActiveSyncDevices\\iPhone§ApplF17XQ1'",
        "Disable-InboxRule -Identity 'bob\\Newsletters'",
        "Remove-InboxRule -Identity 'Newsletters' -Mailbox 'bob'",
        "Remove-InboxRule -Identity 'Newsletters' -Mailbox 'bob' -Confirm",
        "Set-CASMailbox -Identity 'bob' -OWAEnabled $false -Confirm",
    ] {
        let name = cmd.split(' ').next().unwrap();
        // -ErrorAction SilentlyContinue does not hide it: the prompt's failure is terminating.
        let out = run(
            &host,
            &format!("{SNAPIN}{cmd} -ErrorAction SilentlyContinue\n'after'"),
        )
        .await;
        assert!(
            out.stderr.starts_with(&format!("{name} : Windows PowerShell is in NonInteractive mode. Read and Prompt functionality is not available.\r\n")),
            "{}",
            out.stderr
        );
        assert!(
            out.stderr.contains(&format!(
                "InvalidOperation: (:) [{name}], PSInvalidOperationException"
            )),
            "{}",
            out.stderr
        );
        assert_eq!(out.stdout, "after\r\n");
        // try/catch catches it.
        let v = json(
            &host,
            &format!("{SNAPIN}try {{ {cmd}; $m = 'ran' }} catch {{ $m = $_.Exception.Message }}\nConvertTo-Json -InputObject $m"),
        )
        .await;
        assert_eq!(
            v,
            "Windows PowerShell is in NonInteractive mode. Read and Prompt functionality is not available."
        );
    }
    assert_eq!(store.snapshot(), before, "nothing ran");
    assert_eq!(host.exchange_counters().prompts_refused, 10);

    // -WhatIf says what it would do and does nothing.
    let out = run(
        &host,
        &format!("{SNAPIN}Remove-InboxRule -Identity 'Newsletters' -Mailbox 'bob' -WhatIf\nClear-MobileDevice 'bob\\ExchangeActiveSyncDevices\\iPhone§ApplF17XQ1' -WhatIf\n"),
    )
    .await;
    assert_eq!(out.exit_code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines.iter().all(|l| l.starts_with("What if: ")),
        "{}",
        out.stdout
    );
    assert_eq!(store.snapshot(), before);
    assert_eq!(host.exchange_counters().what_if, 2);

    // $ConfirmPreference = 'None' does without the prompt, as in PowerShell.
    let out = run(
        &host,
        &format!("{SNAPIN}$ConfirmPreference = 'None'\nRemove-InboxRule -Identity 'Newsletters' -Mailbox 'bob'\n"),
    )
    .await;
    assert_eq!((out.exit_code, out.stderr.as_str()), (0, ""));
    assert_eq!(store.mailbox("bob").unwrap().inbox_rules.len(), 1);
}

#[tokio::test]
async fn a_missing_identity_is_a_missing_mandatory_parameter() {
    let host = lab(EX2019);
    seed(&host.mailboxes());
    for (cmd, class) in [
        (
            "Set-CASMailbox -OWAEnabled $false",
            "Microsoft.Exchange.Management.RecipientTasks.SetCASMailbox",
        ),
        (
            "Clear-MobileDevice -Confirm:$false",
            "Microsoft.Exchange.Management.Tasks.ClearMobileDevice",
        ),
        (
            "Remove-InboxRule -Mailbox 'bob' -Confirm:$false",
            "Microsoft.Exchange.Management.StoreTasks.RemoveInboxRule",
        ),
    ] {
        let name = cmd.split(' ').next().unwrap();
        let err = fails(&host, &format!("{SNAPIN}{cmd}")).await;
        assert!(
            err.starts_with(&format!("{name} : Cannot process command because of one or more missing mandatory parameters: Identity.")),
            "{err}"
        );
        assert!(
            err.contains(&format!("MissingMandatoryParameter,{class}")),
            "{err}"
        );
    }
    // Unknown parameters fail as PowerShell words it.
    let err = fails(
        &host,
        &format!("{SNAPIN}Set-Mailbox -Identity 'bob' -ForwardTo 'x'"),
    )
    .await;
    assert!(
        err.starts_with(
            "Set-Mailbox : A parameter cannot be found that matches parameter name 'ForwardTo'."
        ),
        "{err}"
    );
}
