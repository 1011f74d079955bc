// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title Quorum vote
/// @notice A yes/no vote on a proposal among the members eligible when it opened. It passes
/// when `yes * 10000 > quorumBps * eligible`, and is decided by the vote after which the
/// outcome can no longer change: the one that reaches the quorum, or the one after which even
/// every remaining eligible member voting yes would not. Undecided at its deadline, it is
/// rejected by {_finalize}.
/// @dev As in OpenZeppelin's Governor, {state} is derived from the clock: an open proposal
/// past its deadline reads `Expired` before anyone finalizes it. The inheriting contract
/// numbers proposals, says who may vote at a snapshot ({_eligibleAt}), emits its own opening
/// event carrying the snapshot, `eligible` and the deadline, and applies the outcome
/// ({_decided}).
abstract contract QuorumVote {
    /// @dev Stored as None, Open, Accepted or Rejected; `Expired` is only ever derived.
    enum VoteState {
        None,
        Open,
        Accepted,
        Rejected,
        Expired
    }

    struct Tally {
        VoteState status;
        uint64 snapshot;
        uint64 deadline;
        uint32 eligible;
        uint32 yes;
        uint32 no;
    }

    uint16 private immutable _quorumBps;
    uint64 private immutable _votingPeriod;

    mapping(uint256 proposalId => Tally) private _tallies;
    mapping(uint256 proposalId => mapping(uint256 memberId => uint8 ballot)) private _ballots;

    /// @param yes The tally after this vote.
    /// @param no The tally after this vote.
    event VoteCast(uint256 indexed proposalId, uint256 indexed memberId, bool support, uint256 yes, uint256 no);
    event ProposalDecided(uint256 indexed proposalId, bool accepted, uint256 yes, uint256 no);

    error QuorumVoteInvalidRules(uint16 quorumBps, uint64 votingPeriod);
    error QuorumVoteUnknownProposal(uint256 proposalId);
    error QuorumVoteProposalClosed(uint256 proposalId, uint8 status);
    error QuorumVoteProposalExpired(uint256 proposalId, uint64 deadline);
    error QuorumVoteProposalNotExpired(uint256 proposalId, uint64 deadline);
    error QuorumVoteAlreadyVoted(uint256 proposalId, uint256 memberId);
    error QuorumVoteNotEligible(uint256 proposalId, uint256 memberId);

    /// @param quorumBps_ A proposal passes when yes * 10000 > quorumBps * eligible; in (0, 10000).
    /// @param votingPeriod_ Seconds a proposal stays open; above 0.
    constructor(uint16 quorumBps_, uint64 votingPeriod_) {
        if (quorumBps_ == 0 || quorumBps_ >= 10000 || votingPeriod_ == 0) {
            revert QuorumVoteInvalidRules(quorumBps_, votingPeriod_);
        }
        _quorumBps = quorumBps_;
        _votingPeriod = votingPeriod_;
    }

    /// @notice The quorum in basis points of the eligible members.
    function quorumBps() external view returns (uint16) {
        return _quorumBps;
    }

    /// @notice How long a proposal stays open, in seconds.
    function votingPeriod() external view returns (uint64) {
        return _votingPeriod;
    }

    /// @notice Where a proposal stands now: an open one past its deadline is `Expired`.
    function state(uint256 proposalId) public view returns (VoteState) {
        Tally storage t = _tallies[proposalId];
        if (t.status == VoteState.Open && block.timestamp >= t.deadline) return VoteState.Expired;
        return t.status;
    }

    /// @notice How a member voted: 0 not yet, 1 yes, 2 no.
    function ballotOf(uint256 proposalId, uint256 memberId) external view returns (uint8) {
        return _ballots[proposalId][memberId];
    }

    /// @dev Whether member `memberId` may vote on a proposal opened at `snapshot`.
    function _eligibleAt(uint256 memberId, uint64 snapshot) internal view virtual returns (bool);

    /// @dev Apply a decided proposal's outcome; called after {ProposalDecided} is emitted.
    function _decided(uint256 proposalId, bool accepted) internal virtual;

    function _tally(uint256 proposalId) internal view returns (Tally storage t) {
        t = _tallies[proposalId];
        if (t.status == VoteState.None) revert QuorumVoteUnknownProposal(proposalId);
    }

    /// @dev Open the vote on a fresh `proposalId`, counting `eligible` voters at `snapshot`.
    function _openVote(uint256 proposalId, uint64 snapshot, uint32 eligible) internal returns (uint64 deadline) {
        deadline = uint64(block.timestamp) + _votingPeriod;
        _tallies[proposalId] = Tally(VoteState.Open, snapshot, deadline, eligible, 0, 0);
    }

    function _castVote(uint256 proposalId, uint256 memberId, bool support) internal {
        Tally storage t = _openTally(proposalId);
        if (block.timestamp >= t.deadline) revert QuorumVoteProposalExpired(proposalId, t.deadline);
        if (!_eligibleAt(memberId, t.snapshot)) revert QuorumVoteNotEligible(proposalId, memberId);
        if (_ballots[proposalId][memberId] != 0) revert QuorumVoteAlreadyVoted(proposalId, memberId);
        _ballots[proposalId][memberId] = support ? 1 : 2;
        if (support) ++t.yes;
        else ++t.no;
        emit VoteCast(proposalId, memberId, support, t.yes, t.no);
        if (_passes(t.yes, t.eligible)) {
            _decide(proposalId, t, true);
        } else if (!_passes(uint256(t.eligible) - t.no, t.eligible)) {
            _decide(proposalId, t, false);
        }
    }

    /// @dev Reject a proposal whose deadline passed undecided.
    function _finalize(uint256 proposalId) internal {
        Tally storage t = _openTally(proposalId);
        if (block.timestamp < t.deadline) revert QuorumVoteProposalNotExpired(proposalId, t.deadline);
        _decide(proposalId, t, false);
    }

    function _openTally(uint256 proposalId) private view returns (Tally storage t) {
        t = _tally(proposalId);
        if (t.status != VoteState.Open) revert QuorumVoteProposalClosed(proposalId, uint8(t.status));
    }

    function _passes(uint256 yes, uint256 eligible) private view returns (bool) {
        return yes * 10000 > uint256(_quorumBps) * eligible;
    }

    function _decide(uint256 proposalId, Tally storage t, bool accepted) private {
        t.status = accepted ? VoteState.Accepted : VoteState.Rejected;
        emit ProposalDecided(proposalId, accepted, t.yes, t.no);
        _decided(proposalId, accepted);
    }
}
